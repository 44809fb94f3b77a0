"""Per-window negative log-likelihood, batched, padding-masked, with bounded logits memory.

The model body runs once per batch; the vocabulary projection and the cross-entropy run
over the valid target positions in chunks, so a 128k vocabulary at batch 32 x 1024 tokens
never materialises a [B, T, V] fp32 logits tensor (15.7 GiB for 32 x 1024 x 128k).
Non-finite window losses are returned as they are: a NaN window is evidence, not noise.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from editproof.errors import EvaluationError, InvalidInputError
from editproof.lm.numerics import flush_denormals

# Bytes of fp32 logits allowed per chunk: 256 MiB on CPU keeps caches calm; 1 GiB on a GPU
# keeps the lm_head matmuls large and the kernel count low (128k-vocab models).
LOGITS_CHUNK_BYTES = 256 * 1024 * 1024
LOGITS_CHUNK_BYTES_CUDA = 1024 * 1024 * 1024
# Config attributes that change logits after the head; models with them take the safe path.
_HEAD_MODIFIERS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier")


@dataclass(frozen=True)
class Telemetry:
    device: str
    dtype: str
    batch_size: int
    windows: int
    tokens: int
    seconds: float
    tokens_per_s: float
    peak_memory_bytes: int
    peak_memory_kind: str  # "cuda_allocated" or "process_rss"
    oom_retries: int
    fast_head: bool

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class WindowNLL:
    """Mean NLL per target token, and the number of target tokens, for each window."""

    mean_nll: np.ndarray  # float64 [n]
    token_counts: np.ndarray  # int64 [n]
    telemetry: Telemetry


def measure_nll(
    model: Any,
    windows: Sequence[Sequence[int]],
    *,
    batch_size: int = 8,
    device: str | None = None,
    pad_id: int = 0,
    on_batch: Callable[[int, int], None] | None = None,
) -> WindowNLL:
    """Evaluate each window as one causal sequence and return its mean target NLL.

    Windows may differ in length; shorter ones are right-padded and the padding is masked
    out of both attention and the loss. Results do not depend on ``batch_size``.
    ``on_batch(done, total)`` is called after every batch that completed, with the number
    of windows measured so far; a batch retried smaller after a CUDA OOM is reported only
    once it succeeds, so ``done`` only grows and ends at ``total``.
    """
    import torch

    if batch_size < 1:
        raise InvalidInputError(f"batch size must be >= 1, got {batch_size}")
    if not windows:
        raise InvalidInputError("no windows to evaluate")
    if any(len(w) < 2 for w in windows):
        raise InvalidInputError("every window needs at least 2 tokens (one input, one target)")
    dev = torch.device(device) if device else next(model.parameters()).device
    fast = _has_plain_head(model)
    sums = np.zeros(len(windows), dtype=np.float64)
    counts = np.zeros(len(windows), dtype=np.int64)
    is_cuda = dev.type == "cuda"
    if is_cuda:
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
    started = time.perf_counter()
    retries = 0
    start = 0
    size = batch_size
    with torch.inference_mode(), flush_denormals(str(dev)):
        while start < len(windows):
            chunk = windows[start : start + size]
            try:
                s, c = _batch_nll(model, chunk, dev, pad_id, fast)
            except torch.cuda.OutOfMemoryError:
                if size == 1:
                    raise EvaluationError(
                        "out of GPU memory evaluating a single window; lower --seq-len"
                    ) from None
                torch.cuda.empty_cache()
                size = max(1, size // 2)  # retry the same windows in smaller batches
                retries += 1
                continue
            sums[start : start + len(chunk)] = s
            counts[start : start + len(chunk)] = c
            start += len(chunk)
            if on_batch is not None:
                on_batch(start, len(windows))
    if is_cuda:
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - started
    tokens = int(sum(len(w) for w in windows))
    peak, kind = (
        (int(torch.cuda.max_memory_allocated(dev)), "cuda_allocated")
        if is_cuda
        else (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "process_rss")
    )
    telemetry = Telemetry(
        device=str(dev),
        dtype=str(next(model.parameters()).dtype).removeprefix("torch."),
        batch_size=size,
        windows=len(windows),
        tokens=tokens,
        seconds=seconds,
        tokens_per_s=tokens / seconds if seconds > 0 else float("inf"),
        peak_memory_bytes=peak,
        peak_memory_kind=kind,
        oom_retries=retries,
        fast_head=fast,
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums / counts
    return WindowNLL(mean_nll=mean, token_counts=counts, telemetry=telemetry)


def _has_plain_head(model: Any) -> bool:
    """True when logits are exactly ``lm_head(last_hidden_state)`` so we may chunk the head."""
    config = getattr(model, "config", None)
    if any(getattr(config, key, None) not in (None, 1, 1.0) for key in _HEAD_MODIFIERS):
        return False
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    base = getattr(model, "base_model", None)
    return head is not None and base is not None and base is not model


def _batch_nll(
    model: Any, chunk: Sequence[Sequence[int]], dev: Any, pad_id: int, fast: bool
) -> tuple[np.ndarray, np.ndarray]:
    import torch

    longest = max(len(w) for w in chunk)
    ids = torch.full((len(chunk), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(chunk), longest), dtype=torch.long)
    for row, window in enumerate(chunk):
        ids[row, : len(window)] = torch.as_tensor(list(window), dtype=torch.long)
        mask[row, : len(window)] = 1
    ids = ids.to(dev, non_blocking=True)
    mask = mask.to(dev, non_blocking=True)
    # A uniform batch needs no attention mask; passing none keeps the fastest SDPA kernel.
    attn = None if bool(mask.all()) else mask
    if fast:
        hidden = model.base_model(input_ids=ids, attention_mask=attn, use_cache=False)[0]
        head = model.get_output_embeddings()
    else:
        hidden = model(input_ids=ids, attention_mask=attn, use_cache=False).logits
        head = None
    # A model spread over several GPUs returns its last states (or logits) on the last
    # one, and the head may sit on yet another: the loss is taken where the logits are.
    out = hidden.device
    if head is not None:
        out = head.weight.device if head.weight.device.type != "meta" else out
    ids, mask, hidden = ids.to(out), mask.to(out), hidden.to(out)
    # Position t predicts token t+1; both must be real tokens.
    valid = (mask[:, 1:] & mask[:, :-1]).bool()
    targets = ids[:, 1:][valid]
    states = hidden[:, :-1][valid]
    rows = torch.arange(len(chunk), device=out).unsqueeze(1).expand_as(valid)[valid]
    width = head.weight.shape[0] if head is not None else states.shape[-1]
    budget = LOGITS_CHUNK_BYTES_CUDA if states.device.type == "cuda" else LOGITS_CHUNK_BYTES
    step = max(1, budget // (4 * width))
    nll = torch.empty(targets.shape[0], dtype=torch.float32, device=out)
    for lo in range(0, targets.shape[0], step):
        part = states[lo : lo + step]
        logits = (head(part) if head is not None else part).float()
        nll[lo : lo + step] = torch.logsumexp(logits, dim=-1) - logits.gather(
            -1, targets[lo : lo + step].unsqueeze(-1)
        ).squeeze(-1)
    # Sum per window in float64 so long windows do not lose precision.
    sums = torch.zeros(len(chunk), dtype=torch.float64, device=out)
    sums.index_add_(0, rows, nll.double())
    counts = valid.sum(dim=1)
    return sums.cpu().numpy(), counts.cpu().numpy().astype(np.int64)
