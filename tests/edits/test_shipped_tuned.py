"""The tuned params file shipped in the package and at the path the seed document names."""

from __future__ import annotations

from pathlib import Path

from editproof.edits import default_tuned, parse_spec, resolve_clean, shipped_tuned

ROOT = Path(__file__).resolve().parents[2]
SEED_PATH = ROOT / "scripts" / "proof_packs" / "tuned_edit_params.json"
PACKAGED = ROOT / "src" / "editproof" / "edits" / "tuned_edit_params.json"


def test_both_copies_are_identical() -> None:
    assert SEED_PATH.read_text() == PACKAGED.read_text()


def test_defaults_are_the_reference_clean_specs() -> None:
    assert shipped_tuned().defaults == default_tuned().defaults


def test_demo_entries_were_tuned_with_evidence() -> None:
    demo = shipped_tuned().models["demo"]
    assert set(demo) == {"quant_rtn", "fp8_quant", "magnitude_prune", "lowrank_svd"}
    from editproof.policy import load_tier

    digest = load_tier("balanced").digest()
    for entry in demo.values():
        assert entry.status == "selected"
        assert entry.evidence and entry.evidence["trials"] and entry.evidence["tier"] == "balanced"
        # re-tuned under the current guard policy, with a margin, on 5 window samples
        assert entry.evidence["policy_digest"] == digest
        assert entry.evidence["margin"] > 0 and len(entry.evidence["seeds"]) == 5
        chosen = next(t for t in entry.evidence["trials"] if t["status"] == "PASS")
        assert len(chosen["seeds"]) == 5
    spec = resolve_clean(parse_spec("quant_rtn:clean:ffn"), "demo", shipped_tuned(), n_layers=30)
    assert spec.text == "quant_rtn:6:32:ffn"


def test_seed_suite_models_are_covered() -> None:
    models = shipped_tuned().models
    for model in (
        "mistralai/Mistral-7B-v0.1",
        "Qwen/Qwen2.5-14B",
        "Qwen/Qwen2.5-32B",
        "01-ai/Yi-34B",
        "mistralai/Mixtral-8x7B-v0.1",
        "Qwen/Qwen1.5-72B",
    ):
        assert set(models[model]) == {"quant_rtn", "fp8_quant", "magnitude_prune", "lowrank_svd"}
        for edit_type in models[model]:
            spec = resolve_clean(
                parse_spec(f"{edit_type}:clean:ffn"), model, shipped_tuned(), n_layers=32
            )
            assert spec.text.startswith(edit_type) and "clean" not in spec.text
