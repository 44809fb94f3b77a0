"""Reversible application: exact restore for every edit, fault and probe on four archs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from editproof.edits import (
    EDIT_TYPES,
    FAULT_TYPES,
    PROBE_TYPES,
    EditRecord,
    active_edit,
    applied,
    apply_edit,
    parse_spec,
)
from editproof.edits import weights as weights_module
from editproof.edits.apply import backup_copy
from editproof.errors import InvalidInputError, UsageError
from editproof.lm.anatomy import tied_groups
from editproof.lm.digest import weight_digest
from tests.edits.test_scope import ARCHS, tiny_model


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    # Tiny matrices gain nothing from intra-op threads, and on a busy 2-core box OpenMP
    # hand-offs make each small matmul ~16 ms; one thread keeps the suite fast.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


WEIGHT_SPECS = (
    "quant_rtn:4:32:ffn",
    "quant_rtn:3:0:all",
    "fp8_quant:e5m2:ffn",
    "fp8_quant:e4m3fn:all",
    "magnitude_prune:0.12:ffn",
    "magnitude_prune:0.5:all",
    "lowrank_svd:4:ffn@layer=1",
    "lowrank_svd:2:attn@layers=1",
)
ALL_SPECS = ("noop", *WEIGHT_SPECS, *FAULT_TYPES, *PROBE_TYPES)


def _state(model: Any) -> tuple[str, Any, dict[str, Any]]:
    """Everything restore must give back: weights digest, tying, layer config."""
    config = model.config
    keys = ("num_hidden_layers", "n_layer", "layer_types", "vocab_size", "tie_word_embeddings")
    values = {k: getattr(config, k) for k in keys if k in vars(config)}
    return weight_digest(model).sha256, tied_groups(model), values


def test_every_type_is_covered() -> None:
    covered = {parse_spec(s).type for s in ALL_SPECS}
    assert covered == {"noop", *EDIT_TYPES, *FAULT_TYPES, *PROBE_TYPES}


@pytest.mark.parametrize("spec", ALL_SPECS)
@pytest.mark.parametrize("arch", ARCHS)
def test_apply_changes_and_restore_is_exact(arch: str, spec: str) -> None:
    model = tiny_model(arch)
    before = _state(model)
    edit = apply_edit(model, spec)
    during = _state(model)
    if spec == "noop":
        assert during == before
    elif spec == "weight_tying_break" and arch == "gpt2":
        # Untying clones lm_head: same bytes, so only the tying shows the fault.
        assert during[1] != before[1] and during[0] == before[0]
    else:
        assert during[0] != before[0]
    assert edit.record.type == parse_spec(spec).type
    assert active_edit(model) is edit
    edit.restore()
    assert _state(model) == before
    assert active_edit(model) is None
    with torch.no_grad():
        logits = model(torch.arange(8).reshape(1, 8)).logits
    assert logits.shape == (1, 8, 128)  # the restored model still runs


@pytest.mark.parametrize("spec", ["missing_tensors", "shape_mismatch", "weight_tying_break"])
def test_structural_faults_leave_a_runnable_model(spec: str) -> None:
    model = tiny_model("qwen2")
    with applied(model, spec) as record, torch.no_grad():
        logits = model(torch.arange(8).reshape(1, 8)).logits
        assert record.kind == "fault" and record.tensors
    expected = 136 if spec == "shape_mismatch" else 128
    assert logits.shape[-1] == expected


def test_shape_mismatch_is_seeded_and_leaves_global_rng_alone() -> None:
    rows = []
    for _ in range(2):
        model = tiny_model("llama")
        torch.manual_seed(5)
        with applied(model, "shape_mismatch"):
            rows.append(model.model.embed_tokens.weight.detach()[-8:].clone())
        after = torch.rand(3)
        torch.manual_seed(5)
        assert torch.equal(torch.rand(3), after)
    assert torch.equal(rows[0], rows[1])


def test_missing_tensors_fixes_config() -> None:
    model = tiny_model("qwen2", layers=3)
    with applied(model, "missing_tensors") as record:
        assert len(model.model.layers) == 2
        assert model.config.num_hidden_layers == 2 and len(model.config.layer_types) == 2
        assert record.injected["config_fixed"] == ["layer_types", "num_hidden_layers"]
        assert all(name.startswith("model.layers.2.") for name in record.tensors)
    assert len(model.model.layers) == 3 and len(model.config.layer_types) == 3
    gpt2 = tiny_model("gpt2")
    with applied(gpt2, "missing_tensors"):
        assert gpt2.config.n_layer == 1 and len(gpt2.transformer.h) == 1
    assert gpt2.config.n_layer == 2


def test_weight_tying_break_both_ways() -> None:
    gpt2 = tiny_model("gpt2")  # tied
    with applied(gpt2, "weight_tying_break") as record:
        assert gpt2.lm_head.weight is not gpt2.transformer.wte.weight
        assert gpt2.config.tie_word_embeddings is False
        assert record.injected == {"tensor": "lm_head.weight", "tied_before": True}
    assert gpt2.lm_head.weight is gpt2.transformer.wte.weight
    llama = tiny_model("llama")  # untied
    with applied(llama, "weight_tying_break"):
        assert llama.lm_head.weight is llama.model.embed_tokens.weight
        assert llama.config.tie_word_embeddings is True
    assert llama.lm_head.weight is not llama.model.embed_tokens.weight
    assert llama.config.tie_word_embeddings is False


def test_restore_after_exception_in_context() -> None:
    model = tiny_model("llama")
    before = _state(model)
    with pytest.raises(RuntimeError, match="boom"), applied(model, "quant_rtn:2:8:all"):
        assert _state(model) != before
        raise RuntimeError("boom")
    assert _state(model) == before
    assert active_edit(model) is None


def test_restore_records_which_backups_the_live_tensors_match() -> None:
    model = tiny_model("llama")
    edit = apply_edit(model, "quant_rtn:2:8:attn")
    names = set(edit.backups())
    assert names and names <= set(model.state_dict())
    edit.restore()
    assert set(edit.restored) == names and all(edit.restored.values())
    assert edit.backups() == {}  # the journal lets its copies go


def test_a_failing_comparison_never_breaks_the_restore(monkeypatch: pytest.MonkeyPatch) -> None:
    import editproof.edits.apply as apply_module

    def broken(*_: object) -> bool:
        raise RuntimeError("device error")

    monkeypatch.setattr(apply_module, "same_bytes", broken)
    model = tiny_model("llama")
    before = _state(model)
    with (
        pytest.raises(ValueError, match="the measurement's own"),
        applied(model, "quant_rtn:2:8:all"),
    ):
        raise ValueError("the measurement's own error")
    assert _state(model) == before and active_edit(model) is None
    edit = apply_edit(model, "quant_rtn:2:8:ffn")
    edit.restore()
    assert edit.restored == {} and _state(model) == before


def test_second_apply_is_refused_until_restore() -> None:
    model = tiny_model("llama")
    first = apply_edit(model, "magnitude_prune:0.5:ffn")
    with pytest.raises(InvalidInputError, match=r"already carries edit 'magnitude_prune:0\.5:ffn'"):
        apply_edit(model, "nan_injection")
    first.restore()
    first.restore()  # idempotent
    with applied(model, "nan_injection"):
        pass
    other = tiny_model("llama")
    with applied(model, "noop"), applied(other, "noop"):  # per model, not global
        pass


def test_failure_part_way_rolls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_model("llama")
    before = _state(model)
    calls = {"n": 0}
    real = weights_module.low_rank

    def flaky(w: torch.Tensor, rank: int, seed: int = 0) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] == 3:
            raise MemoryError("out of memory")
        return real(w, rank, seed)

    monkeypatch.setattr(weights_module, "low_rank", flaky)
    with pytest.raises(MemoryError):
        apply_edit(model, "lowrank_svd:2:all")
    assert calls["n"] == 3
    assert _state(model) == before
    assert active_edit(model) is None


def test_bad_requests() -> None:
    model = tiny_model("llama")
    with pytest.raises(UsageError, match="resolve_clean"):
        apply_edit(model, "quant_rtn:clean:ffn")
    with pytest.raises(UsageError, match=r"'ffn@layer=7'.*2 decoder layers"):
        apply_edit(model, "quant_rtn:4:32:ffn@layer=7")
    with pytest.raises(InvalidInputError, match="need at least 2"):
        apply_edit(tiny_model("llama", layers=1), "missing_tensors")
    with pytest.raises(UsageError, match="spectral_moderate_scale: no attn 'o_proj'"):
        apply_edit(model, "spectral_moderate_scale:layers=4-9")
    assert active_edit(model) is None


def test_backup_copy_on_cpu_is_a_separate_copy() -> None:
    t = torch.randn(4, 4)
    copy = backup_copy(t)
    assert copy.device == t.device and torch.equal(copy, t)
    t.zero_()
    assert not torch.equal(copy, t)


# --- records -----------------------------------------------------------------------------


def test_quant_record() -> None:
    model = tiny_model("llama")
    saved = {n: p.detach().clone() for n, p in model.named_parameters()}
    with applied(model, "quant_rtn:4:32:ffn") as record:
        assert record.kind == "edit" and record.label == "quant_rtn"
        assert record.spec == "quant_rtn:4:32:ffn" and record.scope == "ffn"
        assert record.params == {"bits": 4, "group_size": 32}
        assert len(record.tensors) == 6 and set(record.bits.values()) == {4}
        assert set(record.bits) == set(record.tensors)
        num = den = 0.0
        for stat in record.per_tensor:
            old, new = saved[stat.name], dict(model.named_parameters())[stat.name].detach()
            rel = float(torch.linalg.norm(new - old) / torch.linalg.norm(old))
            assert stat.rel_error == pytest.approx(rel, rel=1e-5)
            num += float(torch.linalg.norm(new - old)) ** 2
            den += float(torch.linalg.norm(old)) ** 2
            assert stat.sparsity is None
        assert record.rel_error == pytest.approx((num / den) ** 0.5, rel=1e-5)
        assert record.n_elements == sum(saved[n].numel() for n in record.tensors)
        assert record.seconds >= 0


def test_fault_and_probe_records() -> None:
    model = tiny_model("llama")
    with applied(model, "nan_injection") as record:
        assert record.kind == "fault" and record.rel_error is None
        assert record.injected["tensor"] == "model.layers.0.self_attn.q_proj.weight"
        assert record.per_tensor[0].n_changed == 1
    with applied(model, "scale_explosion") as record:
        assert record.rel_error == pytest.approx(99.0, rel=1e-4)
    with applied(model, "rmt_norm_noise:max_params=1,row_frac=0.25") as record:
        assert record.kind == "probe" and record.injected["rows"] == [16]
        assert record.per_tensor[0].n_changed > 0
    with applied(model, "extreme_quant") as record:
        assert set(record.bits.values()) == {2} and len(record.bits) == 14
    with applied(model, "noop") as record:
        assert (record.tensors, record.rel_error, record.label) == ([], None, "noop")


def test_rmt_norm_noise_preserves_row_norms() -> None:
    model = tiny_model("llama")
    w = model.model.layers[0].mlp.up_proj.weight
    norms = torch.linalg.norm(w.detach(), dim=1)
    with applied(model, "rmt_norm_noise:jitter=0.1"):
        assert torch.allclose(torch.linalg.norm(w.detach(), dim=1), norms, rtol=1e-5)
    with applied(model, "rmt_norm_noise") as first:
        a = w.detach().clone()
    with applied(model, "rmt_norm_noise") as second:
        assert torch.equal(w.detach(), a)  # seeded: reproducible
    assert first.injected == second.injected


def test_record_is_frozen_json_model() -> None:
    model = tiny_model("gpt2")
    with applied(model, "magnitude_prune:0.25:attn") as record:
        pass
    again = EditRecord.model_validate_json(record.model_dump_json())
    assert again == record
    data = json.loads(record.model_dump_json())
    assert data["sparsity"] == pytest.approx(0.25, abs=0.01)
    with pytest.raises(ValueError, match="frozen"):
        record.label = "x"  # type: ignore[misc]
    with pytest.raises(ValueError, match="Extra inputs"):
        EditRecord.model_validate({**data, "surprise": 1})


def test_check_edit_changes_nothing_and_names_what_the_model_has() -> None:
    from editproof.edits import check_edit

    model = tiny_model("llama")
    before = _state(model)
    assert (
        check_edit(model, "quant_rtn:4:32:ffn@layer=last").text == "quant_rtn:4:32:ffn@layer=last"
    )
    check_edit(model, "rmt_norm_noise")
    check_edit(model, "nan_injection")  # faults select nothing; checked when applied
    assert _state(model) == before and active_edit(model) is None
    with pytest.raises(
        UsageError,
        match=r"'attn@layer=2' matches no attn weights: LlamaForCausalLM has 2 decoder layers \(0-1\) with attn and ffn weights",
    ):
        check_edit(model, "magnitude_prune:0.5:attn@layer=2")
    with pytest.raises(
        UsageError,
        match=r"rmt_norm_noise: no ffn 'up_proj' weights in layers 5-6: LlamaForCausalLM has 2",
    ):
        check_edit(model, "rmt_norm_noise:layers=5-6")
    with pytest.raises(UsageError, match="resolve_clean"):
        check_edit(model, "quant_rtn:clean:ffn")
