"""Residual-branch discovery, hooking and batched forwards shared by the activation guards.

A *branch* is a child of a decoder layer whose parameters all belong to one family (``attn``
or ``ffn``): its output is what the layer adds to the residual stream. Finding branches from
parameter names (``family_of``) rather than attribute names keeps Llama/Mistral/Qwen2/Mixtral
(``self_attn``, ``mlp``) and GPT-2 (``attn``, ``mlp``) on one code path.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from editproof.data.windows import token_hash
from editproof.errors import InvalidInputError
from editproof.guards.base import MeasureContext, Signature, contract_digest
from editproof.lm.anatomy import decoder_layers, family_of
from editproof.lm.numerics import flush_denormals

# A hook sees the branch's first output tensor [B, T, d] and the batch's token mask [B, T].
TensorHook = Callable[["Branch", Any, Any], None]


@dataclass(frozen=True)
class Branch:
    name: str  # full module path, e.g. "model.layers.3.mlp"
    family: str  # "attn", "ffn" or "embed"
    layer: int | None
    module: Any


def residual_branches(model: Any) -> list[Branch]:
    """The attn/ffn children of every decoder layer, in layer order."""
    layers = decoder_layers(model)
    if layers is None:
        raise InvalidInputError(f"{type(model).__name__} has no decoder layers to hook")
    path = {id(m): n for n, m in model.named_modules()}
    found: list[Branch] = []
    for index, layer in enumerate(layers):
        prefix = path.get(id(layer), f"layers.{index}")
        for child_name, child in layer.named_children():
            name = f"{prefix}.{child_name}"
            families = {family_of(f"{name}.{p}") for p, _ in child.named_parameters()}
            families.discard("other")  # a norm nested inside a branch does not change its kind
            if len(families) == 1 and (family := families.pop()) in ("attn", "ffn"):
                found.append(Branch(name, family, index, child))
    return found


# Names of the FFN's up (value) projection: its output is the widest activation in a layer,
# where a low-rank/anisotropic weight perturbation shows before down_proj mixes it. The gate
# projection is left out: hooking it too doubled the guard's cost on a 7B model.
_EXPANSIONS = ("up_proj", "c_fc", "fc1", "w3", "dense_h_to_4h")


def expansion_projections(branches: Sequence[Branch]) -> list[Branch]:
    """The expansion projections inside each ffn branch (dense FFNs; fused experts have none)."""
    found: list[Branch] = []
    for branch in branches:
        if branch.family != "ffn":
            continue
        for child_name, child in branch.module.named_modules():
            leaf = child_name.rsplit(".", 1)[-1]
            if leaf in _EXPANSIONS and getattr(child, "weight", None) is not None:
                found.append(Branch(f"{branch.name}.{child_name}", "ffn", branch.layer, child))
    return found


def embedding_branch(model: Any) -> Branch | None:
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if emb is None:
        return None
    name = next((n for n, m in model.named_modules() if m is emb), "embed_tokens")
    return Branch(name, "embed", None, emb)


def first_tensor(output: Any) -> Any:
    # Attention blocks return (hidden, weights); MoE blocks may return (hidden, router_logits).
    return output[0] if isinstance(output, tuple) else output


def pick_evenly(n: int, k: int) -> list[int]:
    """``idx_i = round(i (n-1) / (k-1))`` (half up), k capped at n: the reference's policy."""
    if n < 1:
        raise InvalidInputError("no evaluation windows to sample from")
    k = min(k, n)
    if k == 1:
        return [0]
    return [math.floor(i * (n - 1) / (k - 1) + 0.5) for i in range(k)]


def unchanged_baseline(
    ctx: MeasureContext, name: str, contract: dict[str, Any]
) -> Signature | None:
    """The baseline's signature when the subject is bit-identical to the baseline.

    That is an in-memory edit that touched no parameter (``noop``): same weights, same
    windows, same seeds, so a forward pass would reproduce the baseline's activations
    exactly. Only for the same contract, as the spectral guard's reuse of untouched tensors.
    """
    base = (ctx.baseline or {}).get(name)
    if ctx.touched is None or ctx.touched or base is None:
        return None
    return base if contract_digest(contract) == base.contract_digest else None


def window_hashes(windows: Sequence[Sequence[int]]) -> list[str]:
    return [token_hash(list(w)) for w in windows]


@contextmanager
def hooked(branches: Sequence[Branch], fn: TensorHook) -> Iterator[Callable[[Any], None]]:
    """Call ``fn(branch, output, mask)`` on every forward of every branch.

    Yields a setter for the current batch's token mask (hooks cannot see the forward's
    arguments), handed to each hook on the device of that branch's output. The hooks are
    always removed, whatever happens inside the block.
    """
    handles = []
    # The mask as set, and its copies on the other devices of a model spread over GPUs.
    masks: dict[Any, Any] = {}

    def mask_on(device: Any) -> Any:
        if device not in masks and masks:
            masks[device] = next(iter(masks.values())).to(device)
        return masks.get(device)

    def make(branch: Branch) -> Callable[[Any, Any, Any], None]:
        def hook(_module: Any, _inputs: Any, output: Any) -> None:
            out = first_tensor(output)
            fn(branch, out, mask_on(out.device))

        return hook

    def set_mask(mask: Any) -> None:
        masks.clear()
        if mask is not None:
            masks[mask.device] = mask

    try:
        for branch in branches:
            handles.append(branch.module.register_forward_hook(make(branch)))
        yield set_mask
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def scaled(branches: Sequence[Branch], scales: dict[str, float]) -> Iterator[None]:
    """Temporarily multiply branch outputs by ``scales[name]``: weights are never touched."""
    handles = []

    def make(alpha: float) -> Callable[[Any, Any, Any], Any]:
        def hook(_module: Any, _inputs: Any, output: Any) -> Any:
            if isinstance(output, tuple):
                return (output[0] * alpha, *output[1:])
            return output * alpha

        return hook

    by_name = {b.name: b for b in branches}
    missing = sorted(set(scales) - set(by_name))
    if missing:
        raise InvalidInputError(f"no residual branch named {', '.join(missing)}")
    try:
        for name, alpha in scales.items():
            handles.append(by_name[name].module.register_forward_hook(make(alpha)))
        yield
    finally:
        for handle in handles:
            handle.remove()


def run_windows(
    model: Any,
    windows: Sequence[Sequence[int]],
    *,
    batch_size: int,
    device: str,
    set_mask: Callable[[Any], None],
) -> None:
    """Forward every window once (right-padded batches, no cache) for the hooks' sake.

    Only the model body runs: hooks sit below the head, so the vocabulary projection would
    be wasted work (it dominates on small models with large vocabularies).
    """
    import torch

    body = getattr(model, "base_model", None)
    body = body if body is not None and body is not model else model
    dev = torch.device(device)
    with torch.inference_mode(), flush_denormals(device):
        for start in range(0, len(windows), max(1, batch_size)):
            chunk = windows[start : start + max(1, batch_size)]
            longest = max(len(w) for w in chunk)
            ids = torch.zeros((len(chunk), longest), dtype=torch.long)
            mask = torch.zeros((len(chunk), longest), dtype=torch.bool)
            for row, window in enumerate(chunk):
                ids[row, : len(window)] = torch.as_tensor(list(window), dtype=torch.long)
                mask[row, : len(window)] = True
            full = bool(mask.all())  # read on the host, before the copy: no device sync
            ids, mask = ids.to(dev), mask.to(dev)
            set_mask(mask)
            # A uniform batch needs no attention mask (keeps the fastest SDPA kernel).
            attn = None if full else mask.long()
            body(input_ids=ids, attention_mask=attn, use_cache=False)
