"""The edited digest built from the baseline's, and the restore check."""

from __future__ import annotations

import pytest
import torch

from editproof.errors import RestoreError
from editproof.lm.digest import fingerprints, weight_digest
from editproof.lm.integrity import edited_digest, verify_restore
from tests.models import tiny_model


def _name(model: torch.nn.Module, fragment: str) -> str:
    return next(n for n in model.state_dict() if fragment in n)


def test_edited_digest_equals_a_full_rehash() -> None:
    model = tiny_model("llama")
    base = weight_digest(model)
    name = _name(model, "layers.0.mlp.up_proj")
    with torch.no_grad():
        model.state_dict()[name].mul_(0.5)
    partial, seconds = edited_digest(model, base, [name], structural=False)
    full = weight_digest(model)
    assert partial.sha256 == full.sha256 != base.sha256 and seconds >= 0
    structural, _ = edited_digest(model, base, [name], structural=True)
    assert structural.sha256 == full.sha256


def test_exact_restore_passes_and_any_leftover_is_named() -> None:
    model = tiny_model("llama")
    base, prints = weight_digest(model), fingerprints(model)
    touched = _name(model, "layers.0.mlp.up_proj")
    untouched = _name(model, "layers.1.self_attn.q_proj")
    verify_restore(model, base, prints, [touched])  # nothing changed
    state = model.state_dict()
    for name in (touched, untouched):  # a journaled tensor, and one no edit declared
        original = state[name].clone()
        with torch.no_grad():
            state[name][0, 0] += 1.0
        with pytest.raises(RestoreError, match=rf"1 tensor\(s\) different \(first: {name}\)"):
            verify_restore(model, base, prints, [touched])
        with torch.no_grad():
            state[name].copy_(original)
    verify_restore(model, base, prints, [touched])
