"""How many windows go through the model at once when ``--batch-size`` is ``auto``.

Larger batches keep a GPU busier, up to a point: on the H200 our loop on a 7B shape gains
2.7 % from 8 to 32 windows of 512 tokens (``docs/performance.md``); on the reference's H100
table a 0.2B shape gains 32 %. What bounds the
batch is the fp32 logits of the loss (batch x tokens x vocabulary x 10 bytes with the bf16
logits and the log-softmax), so the size is chosen from the vocabulary, the hidden size and
the memory of the device that holds the output head:

- on a CPU, 8 windows (more gains nothing there);
- on a GPU, the largest power of two up to 32 windows and 16,384 tokens whose estimate fits
  a quarter of the device's memory left after the parameters on it.

The choice depends only on the model, ``seq_len`` and the device's total memory, never on
what is free at that moment: two workers of one model on the same kind of GPU measure with
the same batch, so their baselines agree to the bit. A batch that still runs out of memory
is retried in halves by the measuring loop.
"""

from __future__ import annotations

from typing import Any

CPU_BATCH = 8
MAX_WINDOWS = 32
MAX_TOKENS = 16384
MEMORY_SHARE = 0.25
# Bytes per logit (bf16 logits, their fp32 copy and the log-softmax) and per hidden unit.
LOGIT_BYTES = 10
HIDDEN_BYTES = 32


def batch_for(seq_len: int, vocab: int, hidden: int, budget_bytes: float) -> int:
    """The largest power of two <= MAX_WINDOWS with batch x seq_len <= MAX_TOKENS whose
    activation estimate fits ``budget_bytes``; at least 1."""
    per_window = seq_len * (vocab * LOGIT_BYTES + hidden * HIDDEN_BYTES)
    size = 1
    while (
        size * 2 <= MAX_WINDOWS
        and size * 2 * seq_len <= MAX_TOKENS
        and size * 2 * per_window <= budget_bytes
    ):
        size *= 2
    return size


def auto_batch_size(model: Any, seq_len: int) -> int:
    """The batch for ``model`` (already on its devices) at ``seq_len`` tokens per window."""
    import torch

    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    weight = getattr(head, "weight", None)
    device = weight.device if weight is not None else next(model.parameters()).device
    if device.type != "cuda":
        return CPU_BATCH
    vocab = int(weight.shape[0]) if weight is not None else int(model.config.vocab_size)
    hidden = int(getattr(model.config, "hidden_size", 0) or 0)
    total = torch.cuda.get_device_properties(device).total_memory
    seen: set[int] = set()
    params = 0
    for p in model.parameters():
        if p.device == device and p.data_ptr() not in seen:  # tied weights count once
            seen.add(p.data_ptr())
            params += p.numel() * p.element_size()
    return batch_for(seq_len, vocab, hidden, MEMORY_SHARE * max(0, total - params))
