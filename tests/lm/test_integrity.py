"""The edited digest built from the baseline's, and the restore check."""

from __future__ import annotations

import pytest
import torch

import editproof.lm.integrity as integrity
from editproof.edits import apply_edit
from editproof.errors import RestoreError
from editproof.lm.digest import fingerprints, same_bytes, tensor_lines, weight_digest
from editproof.lm.integrity import RestoreEvidence, edited_digest, verify_restore
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


# --- the restore check from an edit's own evidence -----------------------------------------


def _evidence_after(model: torch.nn.Module, spec: str) -> tuple[RestoreEvidence, list[str]]:
    """Apply ``spec``, hash its backups while it is live, restore: the evidence and touched."""
    handle = apply_edit(model, spec)
    lines = tensor_lines(handle.backups())
    touched = list(handle.record.tensors)
    handle.restore()
    return RestoreEvidence(lines, handle.restored), touched


def test_evidence_settles_the_touched_tensors_without_rehashing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = tiny_model("llama")  # tied embeddings: an edit of one is an edit of both names
    base, prints = weight_digest(model), fingerprints(model)
    evidence, touched = _evidence_after(model, "quant_rtn:4:8:all")
    assert evidence.restored and all(evidence.restored.values())
    assert set(evidence.backup_lines) == set(evidence.restored)
    rehashed: list[list[str]] = []
    real = integrity.weight_digest

    def counting(m: torch.nn.Module, names: list[str] | None = None) -> object:
        rehashed.append(list(names or []))
        return real(m, names)

    monkeypatch.setattr(integrity, "weight_digest", counting)
    verify_restore(model, base, prints, touched, evidence)
    assert rehashed == []  # every touched tensor was settled by the evidence
    verify_restore(model, base, prints, touched)  # the old way agrees
    assert rehashed and set(rehashed[0]) >= set(touched)


def test_tied_names_are_covered_by_the_tensor_they_share(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = tiny_model("llama")
    base, prints = weight_digest(model), fingerprints(model)
    embed, head = _name(model, "embed_tokens"), _name(model, "lm_head")
    state = model.state_dict()
    assert state[embed].data_ptr() == state[head].data_ptr()
    rehashed: list[str] = []
    real = integrity.weight_digest

    def counting(m: torch.nn.Module, names: list[str] | None = None) -> object:
        rehashed.extend(names or [])
        return real(m, names)

    monkeypatch.setattr(integrity, "weight_digest", counting)
    backup = {embed: state[embed].clone()}
    evidence = RestoreEvidence(tensor_lines(backup), {embed: True})
    verify_restore(model, base, prints, [embed], evidence)  # aliases() adds the head
    assert rehashed == []
    with pytest.raises(RestoreError, match=r"2 tensor\(s\)"):  # both names, one storage
        verify_restore(
            model, base, prints, [embed], RestoreEvidence(evidence.backup_lines, {embed: False})
        )


def test_a_backup_that_is_not_the_baseline_fails_the_check() -> None:
    model = tiny_model("llama")
    base, prints = weight_digest(model), fingerprints(model)
    name = _name(model, "layers.0.mlp.up_proj")
    handle = apply_edit(model, "quant_rtn:4:8:ffn")
    copy = handle.backups()[name]
    copy[0, 0] += 1.0  # the journal's copy no longer holds the baseline's bytes
    lines = tensor_lines(handle.backups())
    handle.restore()  # writes the bad copy back, faithfully
    assert handle.restored[name] is True
    evidence = RestoreEvidence(lines, handle.restored)
    with pytest.raises(RestoreError, match=rf"1 tensor\(s\) different \(first: {name}\)"):
        verify_restore(model, base, prints, list(handle.record.tensors), evidence)


def test_live_bytes_unlike_the_backup_fail_even_when_the_backup_is_right() -> None:
    model = tiny_model("llama")
    base, prints = weight_digest(model), fingerprints(model)
    name = _name(model, "layers.1.self_attn.q_proj")
    evidence, touched = _evidence_after(model, "quant_rtn:4:8:attn")
    lied = RestoreEvidence(evidence.backup_lines, {**evidence.restored, name: False})
    with pytest.raises(RestoreError, match=name.replace(".", r"\.")):
        verify_restore(model, base, prints, touched, lied)


def test_a_change_after_the_evidence_is_still_caught_by_fingerprints() -> None:
    model = tiny_model("llama")
    base, prints = weight_digest(model), fingerprints(model)
    name = _name(model, "layers.0.self_attn.k_proj")
    evidence, touched = _evidence_after(model, "quant_rtn:4:8:attn")
    with torch.no_grad():
        model.state_dict()[name][0, 0] += 1.0
    with pytest.raises(RestoreError, match=name.replace(".", r"\.")):
        verify_restore(model, base, prints, touched, evidence)


def test_same_bytes_is_a_byte_comparison() -> None:
    nan = torch.tensor([float("nan"), 1.0])
    assert same_bytes(nan, nan.clone()) and not torch.equal(nan, nan.clone())
    assert not same_bytes(torch.tensor([0.0]), torch.tensor([-0.0]))
    assert not same_bytes(torch.zeros(2), torch.zeros(2, dtype=torch.float64))
    assert not same_bytes(torch.zeros(2), torch.zeros(1, 2))
