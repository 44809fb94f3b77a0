"""RMT guard: activation edge risk against the Marchenko-Pastur edge, per module family.

For a T x d activation matrix of i.i.d. standardized noise the largest singular value sits near
√T + √d (the MP edge). Edge risk r = sigma_hat / (√T + √d) of a branch's standardized output is
therefore ~1 for unstructured activations and grows when an edit aligns rows/features into an
outlier direction. The guard fails when a family's risk rises by more than ε over the
baseline's, both measured on the SAME sample windows (the contract pins their token hashes).

The estimator (power iteration, three routes to the same iterates) is in :mod:`._edge_risk`.

Aggregation choice: r is computed per window (T = that window's tokens) and averaged per
module weighted by tokens, as the reference does. Per-window matrices keep memory at one
batch of activations, and the MP normalisation stays meaningful for any number of windows.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

from editproof.guards._activations import ActivationTap, measured
from editproof.guards._branches import (
    Branch,
    embedding_branch,
    expansion_projections,
    pick_evenly,
    residual_branches,
    unchanged_baseline,
    window_hashes,
)
from editproof.guards._edge_risk import BATCHED_MAX_TOKENS, EdgeRiskSums
from editproof.guards.base import MeasureContext, Signature, contract_mismatch
from editproof.policy.guards import RmtPolicy
from editproof.report.model import GuardResult

TOP_MODULES = 5


def _policy(policy: RmtPolicy | Mapping[str, Any]) -> RmtPolicy:
    return policy if isinstance(policy, RmtPolicy) else RmtPolicy.model_validate(policy)


class RmtGuard:
    name = "rmt"

    def measure(
        self, model: Any, ctx: MeasureContext, policy: RmtPolicy | Mapping[str, Any]
    ) -> Signature:
        return measured(model, ctx, self.tap(model, ctx, policy))

    def tap(
        self, model: Any, ctx: MeasureContext, policy: RmtPolicy | Mapping[str, Any]
    ) -> ActivationTap | Signature:
        """This guard's share of an activation pass (:mod:`._activations`), or the
        baseline's signature when the subject is bit-identical to it."""
        started = time.perf_counter()
        pol = _policy(policy)
        indices = pick_evenly(len(ctx.windows), pol.windows)
        sample = [list(ctx.windows[i]) for i in indices]
        contract = _contract(pol, ctx.seed, len(ctx.windows), indices, sample)
        same = unchanged_baseline(ctx, self.name, contract)
        if same is not None:
            return same.model_copy(update={"seconds": time.perf_counter() - started})
        branches = residual_branches(model)
        branches += expansion_projections(branches)
        emb = embedding_branch(model)
        if emb is not None:
            branches.insert(0, emb)
        # Sums stay on the device until the pass ends: a float() per module would stall the
        # GPU once per module.
        sums = EdgeRiskSums(pol.power_iters, ctx.seed)
        features: dict[str, int] = {}

        def on_output(branch: Branch, out: Any, mask: Any) -> None:
            sums.add(branch.name, out, mask)
            features[branch.name] = int(out.shape[-1])

        def finish() -> Signature:
            totals, weights = sums.totals()
            return _signature(ctx, contract, branches, totals, weights, features, sample)

        return ActivationTap(self.name, tuple(indices), branches, on_output, finish, started)

    def compare(
        self, baseline: Signature, subject: Signature, policy: RmtPolicy | Mapping[str, Any]
    ) -> GuardResult:
        started = time.perf_counter()
        mismatch = contract_mismatch(self.name, baseline, subject)
        if mismatch is not None:
            return mismatch
        pol = _policy(policy)
        base_f: dict[str, float | None] = baseline.data["families"]
        subj_f: dict[str, float | None] = subject.data["families"]
        measured: dict[str, float] = {}
        thresholds: dict[str, float] = {}
        violations: list[str] = []
        families: dict[str, dict[str, float | None]] = {}
        deltas: list[float] = []
        epsilons = {str(k): v for k, v in pol.epsilon.items()}
        for fam in sorted(base_f):
            base, cur = _num(base_f[fam]), _num(subj_f.get(fam))
            eps = epsilons.get(fam, epsilons.get("other", 0.0))
            thresholds[f"epsilon_{fam}"] = eps
            _put(measured, f"edge_risk_{fam}_base", base)
            _put(measured, f"edge_risk_{fam}_subject", cur)
            if not (base > 0 and math.isfinite(base)):
                families[fam] = {"base": _json_float(base), "subject": _json_float(cur)}
                continue  # nothing to scale a relative change by
            delta = cur / base - 1.0
            families[fam] = {
                "base": base,
                "subject": _json_float(cur),
                "delta": _json_float(delta),
                "epsilon": eps,
            }
            if not math.isfinite(delta):
                violations.append(f"{fam}: subject edge risk is {cur} (baseline {base:.4g})")
            elif delta > eps:
                deltas.append(delta)
                violations.append(
                    f"{fam}: edge risk {cur:.4g} vs baseline {base:.4g} "
                    f"(+{delta:.2%} > epsilon {eps:.2%})"
                )
            else:
                deltas.append(delta)
        if deltas:
            measured["max_delta"] = max(deltas)
        # Per module too: a targeted perturbation (one layer's up_proj) can move that module
        # far while its family maximum, set by another module, barely changes.
        modules = module_deltas(baseline, subject)
        module_max = max((m["delta"] for m in modules if m.get("delta") is not None), default=0.0)
        measured["max_module_delta"] = module_max
        thresholds["module_epsilon"] = pol.module_epsilon
        violations += [
            f"{m['module']}: edge risk +{m['delta']:.2%} > module epsilon {pol.module_epsilon:.2%}"
            for m in modules
            if m.get("delta") is not None and m["delta"] > pol.module_epsilon
        ][:TOP_MODULES]
        measured["stable"] = 0.0 if violations else 1.0
        return GuardResult(
            name=self.name,
            status="fail" if violations else "pass",
            enforced=True,
            measured=measured,
            thresholds=thresholds,
            violations=violations,
            seconds=subject.seconds + time.perf_counter() - started,
            contract_digest=subject.contract_digest,
            details={
                "stable": not violations,
                "families": families,
                "top_modules": modules[:TOP_MODULES],
                "tokens": subject.data.get("tokens"),
            },
        )


def _signature(
    ctx: MeasureContext,
    contract: dict[str, Any],
    branches: list[Branch],
    sums: dict[str, float],
    weights: dict[str, float],
    features: dict[str, int],
    sample: list[list[int]],
) -> Signature:
    """The signature from the pass's per-module sums of risk x tokens and of tokens."""
    modules: dict[str, dict[str, Any]] = {}
    families: dict[str, float] = {}
    for b in branches:
        if b.name not in weights:
            continue  # a branch the forward never reached (e.g. an unused MoE path)
        risk = sums[b.name] / weights[b.name]
        modules[b.name] = {
            "family": b.family,
            "layer": b.layer,
            "features": features[b.name],
            "edge_risk": _json_float(risk),
        }
        # max() would drop NaN; a non-finite module must poison its family instead.
        prev = families.get(b.family, -math.inf)
        families[b.family] = risk if not math.isfinite(risk) else max(prev, risk)
    data = {
        "families": {f: _json_float(v) for f, v in families.items()},
        "modules": modules,
        "tokens": int(sum(len(w) for w in sample)),
        "device": ctx.device,
    }
    return Signature(guard=RmtGuard.name, contract=contract, data=data)


def _contract(
    pol: RmtPolicy, seed: int, n_windows: int, indices: list[int], sample: list[list[int]]
) -> dict[str, Any]:
    return {
        "statistic": "edge_risk = sigma_max(standardized A) / (sqrt(T) + sqrt(d))",
        "estimator": {
            "type": "power_iter",
            "iters": pol.power_iters,
            "init": "randn",
            "products": (
                f"CUDA, windows <= {BATCHED_MAX_TOKENS} tokens: token-space Gram A A^T and "
                "A [v0 | 1] from the activations as they are (bf16/fp16 inputs, fp32 "
                "accumulation and output), centring and scaling folded in; longer CUDA "
                "windows: products with Z in bfloat16; CPU: float32"
            ),
            "version": 2,
        },
        "seed": seed,
        "standardize": "global scalar mean/std per window",
        "aggregate": "token-weighted mean over windows per module; max per family",
        "sampling": {
            "policy": "evenly_spaced",
            "of": n_windows,
            "indices": indices,
            "token_hashes": window_hashes(sample),
        },
    }


def module_deltas(baseline: Signature, subject: Signature) -> list[dict[str, Any]]:
    """Per-module base/subject edge risk and relative change, largest change first."""
    rows: list[dict[str, Any]] = []
    subj_m: dict[str, dict[str, Any]] = subject.data["modules"]
    for name, info in baseline.data["modules"].items():
        base = _num(info["edge_risk"])
        cur = _num(subj_m[name]["edge_risk"]) if name in subj_m else math.nan
        delta = cur / base - 1.0 if base > 0 else math.nan
        rows.append(
            {
                "module": name,
                "family": info["family"],
                "layer": info["layer"],
                "base": _json_float(base),
                "subject": _json_float(cur),
                "delta": _json_float(delta),
            }
        )
    # Non-finite changes (NaN/inf activations, missing modules) sort first: most suspicious.
    rows.sort(key=lambda r: -math.inf if r["delta"] is None else -r["delta"])
    return rows


def _num(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _json_float(value: float) -> float | None:
    # Strict JSON has no NaN/inf: signatures and details store them as null.
    return value if math.isfinite(value) else None


def _put(measured: dict[str, float], key: str, value: float) -> None:
    if math.isfinite(value):
        measured[key] = value
