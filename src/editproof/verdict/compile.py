"""``compile_verdict``: the suite's final verdict as a pure function of its inputs.

Same inputs (in any listing order) give the same ``FinalVerdict``: records are ordered by
model (as listed), scenario (catalogue order) and run; nothing reads the clock or the
file system. A pack can therefore recompute the verdict from the run's files alone.
"""

from __future__ import annotations

from collections.abc import Mapping

from editproof.fileio import canonical_digest
from editproof.report.model import EvaluationReport
from editproof.verdict.evidence import Evidence, check_inputs
from editproof.verdict.matrix import detection_matrix
from editproof.verdict.model import CatalogueInfo, FinalVerdict, VerdictInputs
from editproof.verdict.records import record_from_report
from editproof.verdict.requirements import check_requirements
from editproof.verdict.summaries import (
    category_summary,
    counts,
    guard_intervention_summary,
    guard_signal_summary,
    scenario_signal_summary,
)


def inputs_digest(inputs: VerdictInputs) -> str:
    """Digest of the inputs with reports, failures and skips in a canonical order."""
    data = inputs.model_dump(mode="json")
    for key in ("reports", "failures", "skipped"):
        data[key] = sorted(data[key], key=lambda d: (d["model"], d["scenario"], d.get("run", 0)))
    return canonical_digest(data)


def compile_verdict(
    inputs: VerdictInputs, reports: Mapping[str, tuple[EvaluationReport, bytes]]
) -> FinalVerdict:
    """Judge every report against its scenario and check every requirement.

    ``reports`` maps ``ReportRef.path`` to the parsed report and the exact bytes of its file
    (their sha256 binds each record to its file). Inconsistent inputs raise
    InvalidInputError. PASS iff no requirement fails.
    """
    check_inputs(inputs, reports)
    catalogue = inputs.catalogue
    records = []
    for ref in inputs.reports:
        report, data = reports[ref.path]
        records.append(record_from_report(ref, report, catalogue.get(ref.scenario), data))
    ev = Evidence.build(inputs, records)
    outcomes, failed = check_requirements(ev)
    return FinalVerdict(
        verdict="FAIL" if failed else "PASS",
        suite=inputs.suite,
        models=list(inputs.models),
        catalogue=CatalogueInfo(
            digest=catalogue.digest(),
            scenarios=len(catalogue.scenarios),
            ids=catalogue.ids,
            selection=catalogue.selection,
        ),
        inputs_digest=inputs_digest(inputs),
        requirements=outcomes,
        counts=counts(ev),
        records=ev.records,
        missing=ev.missing(),
        skipped=ev.skipped_list,
        failures=ev.failures,
        relaxations=list(inputs.relaxations),
        failed_requirements=failed,
        category_summary=category_summary(ev),
        guard_signal_summary=guard_signal_summary(ev.records),
        guard_intervention_summary=guard_intervention_summary(ev.records),
        scenario_signal_summary=scenario_signal_summary(ev),
        detection_matrix=detection_matrix(ev, reports),
    )
