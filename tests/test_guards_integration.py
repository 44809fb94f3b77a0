"""The guard chain inside evaluations: the right guard catches each fault, noop passes all."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli._cli import Result

pytest.importorskip("torch")
from editproof.evaluation import EvaluationConfig, Evaluator
from editproof.report.verify import verify_report


@pytest.fixture(scope="module")
def evaluator(tiny_dir: Path) -> Evaluator:
    config = EvaluationConfig(
        baseline=str(tiny_dir),
        edit="noop",
        seq_len=32,
        n_preview=10,
        n_final=10,
        device="cpu",
        relax_token_floor=True,
    )
    return Evaluator(config)


def _statuses(report: object) -> dict[str, str]:
    return {g.name: g.status for g in report.guards.results}  # type: ignore[attr-defined]


def test_noop_passes_every_guard(evaluator: Evaluator) -> None:
    report = evaluator.judge_edit("noop")
    assert _statuses(report) == {
        "invariants": "pass",
        "spectral": "pass",
        "rmt": "pass",
        "variance": "pass",
    }
    assert report.guards.status == "pass" and report.status == "PASS"
    assert all(g.contract_digest and len(g.contract_digest) == 16 for g in report.guards.results)
    assert verify_report(report).ok


@pytest.mark.parametrize(
    ("spec", "guard", "expected"),
    [
        ("nan_injection", "invariants", "fail"),
        ("inf_injection", "invariants", "fail"),
        ("shape_mismatch", "invariants", "fail"),
        ("missing_tensors", "invariants", "warn"),
        ("weight_tying_break", "invariants", "warn"),
        ("scale_explosion", "spectral", "fail"),
        ("norm_collapse", "spectral", "fail"),
        ("rank_collapse", "spectral", "fail"),
    ],
)
def test_faults_are_caught_by_their_guard(
    evaluator: Evaluator, spec: str, guard: str, expected: str
) -> None:
    report = evaluator.judge_edit(spec)
    assert _statuses(report)[guard] == expected, report.guards.results
    if expected == "fail":
        assert report.status == "FAIL" and report.guards.status == "fail"
    assert report.edit.restore_verified
    assert verify_report(report).ok


def test_variance_is_informational(evaluator: Evaluator) -> None:
    report = evaluator.judge_edit("ve_mlp_scale_skew")
    variance = next(g for g in report.guards.results if g.name == "variance")
    assert not variance.enforced and variance.status != "fail"
    assert "ve_probe" in report.guards.probes
    assert report.guards.probes["ve_probe"]["format"] == "editproof.ve-probe"


def test_guard_tampering_is_detected(evaluator: Evaluator) -> None:
    report = evaluator.judge_edit("nan_injection")
    data = json.loads(report.model_dump_json())
    data["guards"]["status"] = "pass"
    data["status"] = "PASS"
    tampered = type(report).model_validate(data)
    problems = verify_report(tampered).problems
    assert any("guards.status" in p for p in problems) and any(
        p.startswith("status") for p in problems
    )


def test_cli_writes_probe_sidecar_and_can_skip_guards(
    cli: Callable[..., Result], tiny_dir: Path, tmp_path: Path
) -> None:
    small = ("--seq-len", "32", "--windows", "8", "--device", "cpu", "--relax-token-floor", "-q")
    out = tmp_path / "rmt"
    r = cli(
        "evaluate",
        "--baseline",
        str(tiny_dir),
        "--edit",
        "rmt_norm_noise",
        "--out",
        str(out),
        *small,
    )
    assert r.code in (0, 1), r.err
    sidecar = json.loads((out / "rmt_probe.json").read_text())
    assert sidecar["format"] == "editproof.rmt-probe" and "stable" in sidecar
    out2 = tmp_path / "noguards"
    r = cli(
        "evaluate",
        "--baseline",
        str(tiny_dir),
        "--edit",
        "nan_injection",
        "--no-guards",
        "--out",
        str(out2),
        *small,
    )
    report = json.loads((out2 / "evaluation.report.json").read_text())
    assert report["guards"]["status"] == "not_run" and report["guards"]["results"] == []


def test_spectral_reuse_matches_a_full_measurement(evaluator: Evaluator) -> None:
    from editproof.edits import apply_edit
    from editproof.guards.spectral import SpectralGuard
    from editproof.lm.digest import aliases

    model = evaluator.model.model
    policy = evaluator.tier.guards.spectral.model_dump()
    guard = SpectralGuard()
    handle = apply_edit(model, "quant_rtn:4:32:ffn")
    try:
        full = guard.measure(model, evaluator.guard_ctx, policy)
        ctx = evaluator.guard_ctx.model_copy(
            update={
                "touched": frozenset(aliases(model, handle.record.tensors)),
                "baseline": evaluator.base_signatures,
            }
        )
        reused = guard.measure(model, ctx, policy)
    finally:
        handle.restore()
    assert reused.data == full.data
    assert reused.contract == full.contract


@pytest.mark.parametrize("attack", ["drop_failed_guard", "mark_informational"])
def test_hiding_a_failed_guard_is_detected(evaluator: Evaluator, attack: str) -> None:
    from editproof.report import derive

    report = evaluator.judge_edit("scale_explosion")
    data = json.loads(report.model_dump_json())
    results = data["guards"]["results"]
    spectral = next(r for r in results if r["name"] == "spectral")
    assert spectral["status"] == "fail"
    if attack == "drop_failed_guard":
        results.remove(spectral)
    else:
        spectral["enforced"] = False
    # A careful forger also recomputes every status the checks derive...
    forged = type(report).model_validate(data)
    status = derive.guards_status(forged.guards.results)
    guards = forged.guards.model_copy(update={"status": status})
    data["guards"]["status"] = status
    data["status"] = derive.overall_status(forged.gates, guards)
    data["validation"] = derive.validation_flags(forged.primary_metric, forged.gates, guards)
    # ...and is still caught, because the chain and its enforcement are fixed.
    problems = verify_report(type(report).model_validate(data)).problems
    assert any("guards" in p for p in problems), problems
