"""Sidecars for probe scenarios: the per-module evidence behind the RMT and VE verdicts.

A probe (``rmt_norm_noise``, ``ve_mlp_scale_skew``) is meant to trip exactly one guard; its
sidecar shows where it did, module by module, so a probe run can be checked without the
report's summarised guard results. Everything returned is strict-JSON (no NaN).
"""

from __future__ import annotations

import math
from typing import Any

from editproof.guards.base import Signature
from editproof.guards.rmt import module_deltas
from editproof.report.model import GuardResult

RMT_PROBE_FORMAT = "editproof.rmt-probe"
VE_PROBE_FORMAT = "editproof.ve-probe"
SCHEMA_VERSION = 1


def rmt_probe(base_sig: Signature, subj_sig: Signature, result: GuardResult) -> dict[str, Any]:
    return {
        "format": RMT_PROBE_FORMAT,
        "schema_version": SCHEMA_VERSION,
        "guard": result.name,
        "status": result.status,
        "stable": result.status != "fail",
        "violations": list(result.violations),
        "contract_digest": result.contract_digest,
        "families": result.details.get("families", {}),
        "modules": module_deltas(base_sig, subj_sig),
    }


def ve_probe(base_sig: Signature, subj_sig: Signature, result: GuardResult) -> dict[str, Any]:
    proposals: dict[str, float] = result.details.get("proposals", {})
    ab: dict[str, Any] = result.details.get("ab", {})
    would_enable = bool(ab.get("would_enable", False))
    subj: dict[str, dict[str, Any]] = subj_sig.data.get("branches", {})
    branches = []
    for name, info in base_sig.data.get("branches", {}).items():
        # The statistic the proposals come from (older signatures only had mean_sq).
        key = "median_sq" if "median_sq" in info else "mean_sq"
        vb, vs = info[key], subj.get(name, {}).get(key)
        ratio = vs / vb if vb and vs is not None else None
        branches.append(
            {
                "branch": name,
                "family": info["family"],
                "layer": info["layer"],
                "var_base": vb,
                "var_subject": vs,
                "ratio": ratio if ratio is not None and math.isfinite(ratio) else None,
                "proposed_scale": proposals.get(name),
            }
        )
    return {
        "format": VE_PROBE_FORMAT,
        "schema_version": SCHEMA_VERSION,
        "guard": result.name,
        "status": result.status,
        "signal": bool(proposals) or would_enable,
        "proposed_scales": len(proposals),
        "proposals": dict(proposals),
        "would_enable": would_enable,
        "ab": {
            k: ab[k]
            for k in ("ok", "reason", "gain", "ci_low", "ci_high", "ppl_a", "ppl_b", "error")
            if k in ab
        },
        "contract_digest": result.contract_digest,
        "branches": branches,
    }
