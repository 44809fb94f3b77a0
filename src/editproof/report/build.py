"""Assemble an :class:`EvaluationReport` from measured arms; all numbers via :mod:`derive`."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from editproof import __version__
from editproof.policy import TierPolicy
from editproof.report import derive
from editproof.report.model import (
    Arm,
    DatasetInfo,
    EditInfo,
    EvaluationReport,
    GuardsSection,
    ModelInfo,
    PolicyInfo,
    Provenance,
    TelemetryInfo,
    ToolInfo,
    WindowSet,
)


def make_arm(
    model: ModelInfo, preview: WindowSet, final: WindowSet, telemetry: TelemetryInfo
) -> Arm:
    return Arm(
        model=model,
        preview=preview,
        final=final,
        summary=derive.arm_summary(preview, final),
        telemetry=telemetry,
    )


def build_report(
    *,
    tier: TierPolicy,
    dataset: DatasetInfo,
    baseline: Arm,
    subject: Arm,
    edit: EditInfo,
    provenance: Provenance,
    relax_reason: str | None,
    guards: GuardsSection | None = None,
    policy_source: str | None = None,
) -> EvaluationReport:
    """Derive the primary metric, drift and gates, and decide the status."""
    guards = guards or GuardsSection()
    relaxed = relax_reason is not None
    pm = derive.primary_metric(
        baseline.final,
        subject.final,
        tier,
        seed=provenance.seeds["bootstrap"],
        n_preview=len(subject.preview.window_ids),
    )
    dr = derive.drift(baseline.summary, subject.summary, tier)
    gates = derive.gates(
        pm,
        dr,
        subject.summary,
        tier,
        tokens_available=dataset.tokens_available,
        floor_relaxed=relaxed,
    )
    return EvaluationReport(
        run_id=uuid.uuid4().hex[:12],
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        tool=ToolInfo(version=__version__),
        status=derive.overall_status(gates, guards),
        policy=PolicyInfo(
            tier=tier,
            digest=tier.digest(),
            token_floor_relaxed=relaxed,
            relax_reason=relax_reason,
            source=policy_source,
        ),
        dataset=dataset,
        edit=edit,
        baseline=baseline,
        subject=subject,
        primary_metric=pm,
        drift=dr,
        gates=gates,
        guards=guards,
        validation=derive.validation_flags(pm, gates, guards),
        provenance=provenance,
    )
