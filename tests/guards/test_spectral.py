"""Spectral guard: sigma_max per matrix vs the baseline's, on tiny Llama, GPT-2 and Mixtral."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from editproof.edits import apply_edit
from editproof.guards.base import MeasureContext, Signature
from editproof.guards.spectral import SpectralGuard
from editproof.policy.tiers import load_tier
from editproof.report.model import GuardResult
from tests.models import tiny_model
from tests.spectra import with_spectrum

ARCHS = ("llama", "gpt2", "mixtral")
CTX = MeasureContext(device="cpu", windows=[], seed=7)
POLICY = load_tier("balanced").guards.spectral.model_dump()
GUARD = SpectralGuard()
O_PROJ = {
    "llama": "model.layers.0.self_attn.o_proj.weight",
    "gpt2": "transformer.h.0.attn.c_proj.weight",
    "mixtral": "model.layers.0.self_attn.o_proj.weight",
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    # Tiny matmuls gain nothing from intra-op threads; on a busy 2-core box they only add
    # OpenMP hand-off latency.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def models() -> dict[str, tuple[Any, Signature]]:
    out = {}
    for arch in ARCHS:
        model = tiny_model(arch)
        out[arch] = (model, GUARD.measure(model, CTX, POLICY))
    return out


def judge(model: Any, base: Signature, spec: str) -> GuardResult:
    edit = apply_edit(model, spec)
    try:
        subject = GUARD.measure(model, CTX, POLICY)
    finally:
        edit.restore()
    return GUARD.compare(base, subject, POLICY)


def sig(matrices: dict[str, tuple[str, float]], iters: int = 20) -> Signature:
    """A hand-made signature: name -> (family, sigma); stable rank and collapse held at 1."""
    data = {
        n: {"family": f, "sigma": s, "frob": s, "stable_rank": 1.0, "norm_collapse": 1.0}
        for n, (f, s) in matrices.items()
    }
    contract = {"estimator": "power_iteration", "iters": iters, "seed": 0, "dtype": "float32"}
    return Signature(guard="spectral", contract={**contract, "version": 1}, data={"matrices": data})


# --- faults and probes on real architectures ------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
def test_noop_passes_with_all_z_exactly_zero(models: dict[str, Any], arch: str) -> None:
    model, base = models[arch]
    result = judge(model, base, "noop")
    assert result.status == "pass" and result.violations == []
    assert result.measured["max_abs_z"] == 0.0
    assert result.measured["max_sigma_ratio"] == 1.0
    assert all(row["z"] == 0.0 for row in result.details["top_z"])
    assert result.measured["matrices"] == len(base.data["matrices"])


@pytest.mark.parametrize("arch", ARCHS)
def test_scale_explosion_fails_on_the_ratio(models: dict[str, Any], arch: str) -> None:
    model, base = models[arch]
    result = judge(model, base, "scale_explosion")
    assert result.status == "fail"
    assert result.measured["max_sigma_ratio"] == pytest.approx(100.0, rel=1e-4)
    assert any(v.startswith("sigma_ratio: ") for v in result.violations)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("spec", ["norm_collapse", "rank_collapse"])
def test_collapse_faults_fail(models: dict[str, Any], arch: str, spec: str) -> None:
    model, base = models[arch]
    result = judge(model, base, spec)
    assert result.status == "fail", result.violations
    assert result.measured["min_stable_rank_ratio"] < POLICY["stable_rank_fail"]
    assert result.measured["min_norm_collapse_ratio"] < POLICY["norm_collapse_fail"]


@pytest.mark.parametrize("arch", ARCHS)
def test_moderate_scale_moves_exactly_one_matrix(models: dict[str, Any], arch: str) -> None:
    model, base = models[arch]
    result = judge(model, base, "spectral_moderate_scale")
    top = result.details["top_z"]
    assert top[0]["name"] == O_PROJ[arch] and top[0]["family"] == "attn"
    assert top[0]["sigma_ratio"] == pytest.approx(2.0, rel=1e-5)
    assert all(row["z"] == 0.0 for row in top[1:])
    assert result.measured["max_sigma_ratio"] == pytest.approx(2.0, rel=1e-5)
    # z is the sigma change over the spread of the baseline's attn sigmas.
    sd = result.details["families"]["attn"]["sd"]
    sigma = base.data["matrices"][O_PROJ[arch]]["sigma"]
    assert top[0]["z"] == pytest.approx(sigma / sd, rel=1e-4)
    # |log 2| = 0.69 is far beyond the per-matrix bound: flagged on every architecture.
    assert result.measured["log_ratio_flags"] == 1
    assert result.details["top_log_ratio"][0]["name"] == O_PROJ[arch]
    assert result.details["top_log_ratio"][0]["log_ratio"] == pytest.approx(math.log(2), rel=1e-5)
    if arch == "gpt2":
        # Two attn shapes (c_attn 32x96, c_proj 32x32) make a wide spread: a small z, so
        # only the matrix's own baseline catches it.
        assert result.measured["z_caps"] == 0 and result.measured["caps"] == 1
        assert result.status == "warn"
    else:
        assert top[0]["z"] > 8 and result.status == "warn"
        assert result.measured["caps"] == 1 and result.details["selected_families"] == ["attn"]


@pytest.mark.parametrize("arch", ARCHS)
def test_quant_8bit_passes(models: dict[str, Any], arch: str) -> None:
    model, base = models[arch]
    result = judge(model, base, "quant_rtn:8:32:all")
    assert result.status == "pass", result.violations
    assert 0 < result.measured["max_abs_z"] < 1


@pytest.mark.parametrize("spec", ["nan_injection", "inf_injection"])
def test_non_finite_sigma_fails(models: dict[str, Any], spec: str) -> None:
    model, base = models["llama"]
    result = judge(model, base, spec)
    assert result.status == "fail"
    assert result.measured["non_finite_matrices"] == 1


def test_structural_changes_are_counted_not_failed(models: dict[str, Any]) -> None:
    model, base = models["llama"]
    dropped = judge(model, base, "missing_tensors")
    assert dropped.status == "pass" and dropped.measured["missing_matrices"] == 7
    untied = judge(model, base, "weight_tying_break")
    assert untied.status == "pass" and untied.measured["extra_matrices"] == 1


# --- what gets measured ---------------------------------------------------------------------


def test_matrices_tied_head_once_and_expert_slices(models: dict[str, Any]) -> None:
    llama = models["llama"][1].data["matrices"]
    assert "lm_head.weight" not in llama and "model.embed_tokens.weight" in llama
    assert len(llama) == 15  # 2 x 7 projections + the (tied) embedding
    mixtral = models["mixtral"][1].data["matrices"]
    assert "lm_head.weight" in mixtral
    slices = [n for n in mixtral if ".experts." in n]
    assert len(slices) == 16  # 2 layers x (gate_up, down) x 4 experts
    assert "model.layers.1.mlp.experts.down_proj[3]" in slices
    assert {mixtral[n]["family"] for n in slices} == {"ffn"}
    gpt2 = models["gpt2"][1].data["matrices"]
    assert gpt2["transformer.wpe.weight"]["family"] == "embed"


def _linear(weight: torch.Tensor) -> torch.nn.Module:
    layer = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    with torch.no_grad():
        layer.weight.copy_(weight)
    return layer


def test_power_iteration_accuracy() -> None:
    spectrum = 10.0 * 0.6 ** torch.arange(32, dtype=torch.float32)
    weight = with_spectrum(48, 32, spectrum, torch.Generator().manual_seed(3))
    data = GUARD.measure(_linear(weight), CTX, POLICY).data["matrices"]["weight"]
    exact = float(torch.linalg.matrix_norm(weight, 2))
    assert data["sigma"] == pytest.approx(exact, rel=1e-3)
    frob = float(torch.linalg.matrix_norm(weight))
    assert data["stable_rank"] == pytest.approx(frob**2 / exact**2, rel=2e-3)


def test_norm_collapse_statistic() -> None:
    weight = torch.ones(4, 6)
    weight[1] *= 0.5  # rows 0.5x the median -> 0.5; columns stay equal
    data = GUARD.measure(_linear(weight), CTX, POLICY).data["matrices"]["weight"]
    assert data["norm_collapse"] == pytest.approx(0.5)
    weight[:, 2] = 0.0  # a dead input column
    data = GUARD.measure(_linear(weight), CTX, POLICY).data["matrices"]["weight"]
    assert data["norm_collapse"] == 0.0
    zero = GUARD.measure(_linear(torch.zeros(4, 6)), CTX, POLICY).data["matrices"]["weight"]
    assert zero == {
        "family": "other",
        "sigma": 0.0,
        "frob": 0.0,
        "stable_rank": 0.0,
        "norm_collapse": 0.0,
    }


def test_independent_of_module_order_and_deterministic() -> None:
    torch.manual_seed(0)
    layers = {
        "a": torch.nn.Linear(24, 40),
        "b": torch.nn.Linear(40, 24),
        "c": torch.nn.Linear(8, 8),
    }
    forward = torch.nn.ModuleDict(layers)
    backward = torch.nn.ModuleDict(dict(reversed(layers.items())))
    first = GUARD.measure(forward, CTX, POLICY)
    assert first.data == GUARD.measure(backward, CTX, POLICY).data
    assert first.data == GUARD.measure(forward, CTX, POLICY).data
    reseeded = GUARD.measure(forward, CTX.model_copy(update={"seed": 8}), POLICY)
    assert reseeded.contract_digest != first.contract_digest
    assert GUARD.compare(first, reseeded, POLICY).status == "fail"  # contract mismatch


def test_batch_budget_does_not_change_a_number(monkeypatch: pytest.MonkeyPatch) -> None:
    """Same-shaped weights are stacked in batches bounded by bytes: one matrix per batch or
    all of them in one, every statistic is the same."""
    import editproof.guards._spectral_measure as sm

    torch.manual_seed(1)
    model = torch.nn.ModuleDict({f"l{i}": torch.nn.Linear(32, 48) for i in range(5)})
    whole = GUARD.measure(model, CTX, POLICY)
    monkeypatch.setattr(sm, "_BATCH_BYTES", 2 * 32 * 48 * 4)  # one fp32 matrix per batch
    single = GUARD.measure(model, CTX, POLICY)
    assert single.data["matrices"].keys() == whole.data["matrices"].keys()
    for name, stats in whole.data["matrices"].items():
        for key, value in stats.items():
            got = single.data["matrices"][name][key]
            assert got == value or math.isclose(got, value, rel_tol=1e-6), (name, key)


# --- compare on hand-made signatures --------------------------------------------------------


def _family_shift(z_attn: float, z_ffn: float) -> tuple[Signature, Signature]:
    # Five matrices per family with sigma 1..5: sd (ddof 0) is sqrt(2).
    base = {f"{f}{i}": (f, float(i)) for f in ("attn", "ffn") for i in range(1, 6)}
    subj = dict(base)
    subj["attn1"] = ("attn", 1 + z_attn * math.sqrt(2))
    subj["ffn1"] = ("ffn", 1 + z_ffn * math.sqrt(2))
    return sig(base), sig(subj)


def _policy(**changes: Any) -> dict[str, Any]:
    # The family z alone: the per-matrix bound is off unless a test sets it.
    kappa = {"attn": 2.0, "ffn": 2.0, "embed": 3.0, "other": 3.0}
    return {**POLICY, "kappa": kappa, "max_log_ratio": {}, "alpha": 0.05, **changes}


def test_bh_selects_families_bonferroni_does_not() -> None:
    # p(attn) = erfc(2.1/sqrt2) = 0.036, p(ffn) = 0.028; m = 2 families.
    base, subj = _family_shift(2.1, 2.2)
    bh = GUARD.compare(base, subj, _policy(multiple_testing="bh"))
    assert bh.measured["max_abs_z"] == pytest.approx(2.2)
    assert bh.status == "warn" and bh.measured["caps"] == 2
    assert bh.details["selected_families"] == ["attn", "ffn"]
    assert bh.details["multiple_testing"]["m"] == 2
    bonferroni = GUARD.compare(base, subj, _policy(multiple_testing="bonferroni"))
    assert bonferroni.measured["candidates"] == 2 and bonferroni.measured["caps"] == 0
    assert bonferroni.status == "pass"


def test_caps_beyond_max_caps_fail() -> None:
    base, subj = _family_shift(3.0, 3.5)
    assert GUARD.compare(base, subj, _policy(max_caps=2)).status == "warn"
    result = GUARD.compare(base, subj, _policy(max_caps=1))
    assert result.status == "fail" and result.violations[0] == "caps: 2 > max_caps 1"


def test_zero_spread_family_uses_relative_change() -> None:
    base = sig({"emb": ("embed", 2.0), "a1": ("attn", 1.0), "a2": ("attn", 3.0)})
    subj = sig({"emb": ("embed", 2.5), "a1": ("attn", 1.0), "a2": ("attn", 3.0)})
    result = GUARD.compare(base, subj, {**POLICY, "max_log_ratio": {}})
    assert result.details["top_z"][0] == pytest.approx(
        {"name": "emb", "family": "embed", "z": 2.5, "sigma_ratio": 1.25}
    )
    assert result.details["families"]["embed"]["sd_zero"] is True
    assert result.status == "pass"  # 2.5 < kappa_embed 3.0


def test_degeneracy_thresholds() -> None:
    base = sig({"a": ("attn", 1.0), "b": ("attn", 2.0)})
    subj = sig({"a": ("attn", 1.0), "b": ("attn", 2.0)})
    subj.data["matrices"]["a"]["stable_rank"] = 0.4  # warn band [0.25, 0.5)
    assert GUARD.compare(base, subj, POLICY).status == "warn"
    subj.data["matrices"]["a"]["stable_rank"] = 0.2
    failed = GUARD.compare(base, subj, POLICY)
    assert failed.status == "fail"
    assert failed.violations == ["stable_rank: a ratio 0.200 < 0.25"]
    subj.data["matrices"]["a"]["stable_rank"] = 1.0
    subj.data["matrices"]["b"]["norm_collapse"] = 0.05
    assert GUARD.compare(base, subj, POLICY).measured["min_norm_collapse_ratio"] == 0.05
    assert GUARD.compare(base, subj, POLICY).status == "fail"


# --- each matrix against its own baseline -----------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
def test_one_matrix_scaled_by_1_4_is_flagged_not_failed(models: dict[str, Any], arch: str) -> None:
    model, base = models[arch]
    spec = "spectral_moderate_scale:factor=1.4,family=mlp,target=up_proj,max_params=1,seed=7"
    result = judge(model, base, spec)
    slices = 4 if arch == "mixtral" else 1  # one fused expert stack: every slice scaled
    assert result.measured["log_ratio_flags"] == slices and result.measured["caps"] >= 1
    assert result.measured["max_log_ratio"] == pytest.approx(math.log(1.4), rel=1e-4)
    assert result.status == "warn", result.violations  # a cap warns; only > max_caps fails
    assert any(v.startswith("log_ratio: ") for v in result.violations)
    family = result.details["top_log_ratio"][0]["family"]
    assert result.details["families"][family]["log_ratio_flags"] == slices


@pytest.mark.parametrize("arch", ARCHS)
def test_noop_and_8bit_quant_are_not_flagged(models: dict[str, Any], arch: str) -> None:
    model, base = models[arch]
    noop = judge(model, base, "noop")
    assert noop.measured["log_ratio_flags"] == 0 and noop.measured["max_log_ratio"] == 0.0
    quant = judge(model, base, "quant_rtn:8:32:all")
    assert quant.measured["log_ratio_flags"] == 0 and quant.status == "pass"
    assert quant.measured["max_log_ratio"] < 0.01


def test_log_ratio_bound_per_family_and_off_when_unset() -> None:
    base = sig({"a1": ("attn", 1.0), "a2": ("attn", 3.0), "f1": ("ffn", 2.0), "f2": ("ffn", 4.0)})
    subj = sig({"a1": ("attn", 1.2), "a2": ("attn", 3.0), "f1": ("ffn", 2.0), "f2": ("ffn", 4.0)})
    # d = log 1.2 = 0.182; z = 0.2 / 1.0 is far below kappa.
    loose = GUARD.compare(base, subj, _policy(max_log_ratio={"attn": 0.2}))
    assert loose.status == "pass" and loose.thresholds["max_log_ratio_attn"] == 0.2
    tight = GUARD.compare(base, subj, _policy(max_log_ratio={"attn": 0.15, "ffn": 0.5}))
    assert tight.status == "warn" and tight.measured["caps"] == 1
    assert tight.measured["z_caps"] == 0 and tight.measured["log_ratio_flags"] == 1
    assert tight.details["families"]["attn"]["max_log_ratio"] == pytest.approx(math.log(1.2))
    # A family the policy leaves out gets the strictest bound it names (here 0.15 for attn).
    fallback = GUARD.compare(base, subj, _policy(max_log_ratio={"ffn": 0.15}))
    assert fallback.measured["log_ratio_flags"] == 1
    # An empty bound turns the check off (policies written before it existed).
    assert GUARD.compare(base, subj, _policy()).status == "pass"
    # Flags beyond max_caps fail, like z caps.
    many = GUARD.compare(base, subj, _policy(max_log_ratio={"attn": 0.1}, max_caps=0))
    assert many.status == "fail"


def test_lanczos_is_accurate_where_power_iteration_is_not() -> None:
    # A flat top of the spectrum (sigma_2 / sigma_1 = 0.98): from the same random starts,
    # 10 power iterations stay up to 6 % below sigma_max, 10 Lanczos steps within 2.5 %.
    from editproof.guards._spectral_measure import lanczos_sigma_max

    gen = torch.Generator().manual_seed(5)
    spectrum = torch.linspace(0.98, 0.2, 64)
    spectrum[0] = 1.0
    weight = with_spectrum(96, 64, spectrum, gen)
    starts = torch.randn(5, 64, generator=gen)
    lanczos = lanczos_sigma_max(weight.expand(5, 96, 64), starts, 10)
    assert float(lanczos.max()) <= 1.0 + 1e-5 and float(lanczos.min()) > 0.975
    for start, est in zip(starts, lanczos.tolist(), strict=True):
        x = start / start.norm()
        for _ in range(10):
            x = weight.T @ (weight @ x)
            x = x / x.norm()
        assert est >= float((weight @ x).norm()) - 1e-6  # never worse than power iteration
    # Rank-deficient and zero matrices: the Krylov space runs out without NaNs.
    rank_one = torch.outer(torch.arange(1.0, 7.0), torch.ones(5))
    exact = float(torch.linalg.matrix_norm(rank_one, 2))
    got = lanczos_sigma_max(torch.stack([rank_one, torch.zeros(6, 5)]), torch.randn(2, 5), 10)
    assert float(got[0]) == pytest.approx(exact, rel=1e-5) and float(got[1]) == 0.0
    nan = rank_one.clone()
    nan[0, 0] = math.nan
    assert math.isnan(float(lanczos_sigma_max(nan.unsqueeze(0), torch.randn(1, 5), 10)[0]))
