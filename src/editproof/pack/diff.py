"""``editproof diff``: two verified packs compared run by run. Pure comparison, no I/O.

Runs are matched on (model directory, scenario id, run number); the model directory is the
first part of the run's report path, so a model given by a different path in the two runs
still matches when its directory name is the same. For each run: status, requirement and
gate flips, ratio change with both CIs and whether they overlap, guard signals gained or
lost, and the weight digests of both sides. Requirements newly failed or fixed, scenarios
added or missing, the verdicts, tool versions and model digests of both packs.

A regression (exit 1 under ``--fail-on regression``): the verdict goes PASS -> FAIL, a
requirement that passed now fails, or a run that met its requirement no longer does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from editproof.pack import layout as L
from editproof.pack import strictjson
from editproof.pack.manifest import Manifest
from editproof.verdict.model import FinalVerdict, Record

DIFF_FORMAT = "editproof.pack-diff"
Change = Literal["same", "changed", "added", "missing"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PackSide(_Model):
    pack: str
    kind: Literal["directory", "archive"]
    verdict: Literal["PASS", "FAIL"]
    suite: str
    tool_version: str
    tool_source_revision: str | None
    manifest_sha256: str
    generated_at: str
    signatures: list[str]


class ModelChange(_Model):
    model: str
    weight_sha256_a: str | None
    weight_sha256_b: str | None
    change: Change


class RequirementChange(_Model):
    requirement: str
    passed_a: bool | None
    passed_b: bool | None
    applicable_a: bool | None
    applicable_b: bool | None
    change: Literal["same", "newly_failed", "fixed", "added", "missing"]


class RunChange(_Model):
    model: str
    model_dir: str
    scenario: str
    run: int
    category: str
    strictness: str
    change: Change
    status_a: str | None
    status_b: str | None
    passed_a: bool | None
    passed_b: bool | None
    requirement_met_a: bool | None
    requirement_met_b: bool | None
    ratio_a: float | None
    ratio_b: float | None
    ratio_delta: float | None
    ci_a: tuple[float, float] | None
    ci_b: tuple[float, float] | None
    ci_overlap: bool | None  # None when either side has no interval
    guards_gained: list[str]
    guards_lost: list[str]
    weight_sha256_a: str | None
    weight_sha256_b: str | None
    regression: bool
    notes: list[str]


class DiffCounts(_Model):
    runs_a: int
    runs_b: int
    matched: int
    changed: int
    status_flips: int
    added: int
    missing: int
    ci_disjoint: int
    requirements_newly_failed: int
    requirements_fixed: int
    regressions: int


class PackDiff(_Model):
    format: Literal["editproof.pack-diff"] = "editproof.pack-diff"
    schema_version: Literal[1] = 1
    a: PackSide
    b: PackSide
    verdict_change: Literal["same", "PASS->FAIL", "FAIL->PASS"]
    tool_changed: bool
    model_changed: bool
    models: list[ModelChange]
    requirements: list[RequirementChange]
    runs: list[RunChange]
    counts: DiffCounts
    regression: bool
    regressions: list[str] = Field(default_factory=list)  # one line per regression

    @property
    def changed(self) -> bool:
        c = self.counts
        return (
            self.verdict_change != "same"
            or self.model_changed
            or c.changed + c.added + c.missing + c.requirements_newly_failed > 0
            or c.requirements_fixed > 0
        )


@dataclass(frozen=True)
class DiffInput:
    """One verified pack: what it claims (manifest), its verdict and each run's CI."""

    side: PackSide
    manifest: Manifest
    verdict: FinalVerdict
    cis: Mapping[str, tuple[float, float] | None]  # record path -> ratio CI


def _ci_of(report: bytes) -> tuple[float, float] | None:
    try:
        data = strictjson.loads(report, allow_nan=True)
        ci = data["primary_metric"]["display_ci"]
    except (strictjson.StrictJSONError, KeyError, TypeError):
        return None
    if isinstance(ci, list) and len(ci) == 2 and all(isinstance(x, int | float) for x in ci):
        return float(ci[0]), float(ci[1])
    return None


def diff_input(side: PackSide, manifest: Manifest, files: Mapping[str, bytes]) -> DiffInput:
    """Read a verified pack's verdict and each record's CI from the bytes the verifier
    hashed (``PackVerification.files``)."""
    verdict = FinalVerdict.model_validate(strictjson.loads(files[L.FINAL_VERDICT]))
    cis: dict[str, tuple[float, float] | None] = {}
    for rec in verdict.records:
        data = files.get(f"{L.cert_dir(rec.path)}/{L.REPORT_NAME}")
        cis[rec.path] = _ci_of(data) if data is not None else None
    return DiffInput(side, manifest, verdict, cis)


def _model_dir(rec: Record) -> str:
    return PurePosixPath(rec.path).parts[0]


def _key(rec: Record) -> tuple[str, str, int]:
    return _model_dir(rec), rec.scenario, rec.run


def _digests(m: Manifest) -> dict[str, str | None]:
    return {d.model: d.weight_sha256 for d in m.models}


def _overlap(a: tuple[float, float] | None, b: tuple[float, float] | None) -> bool | None:
    if a is None or b is None:
        return None
    return a[0] <= b[1] and b[0] <= a[1]


def _run(ra: Record | None, rb: Record | None, a: DiffInput, b: DiffInput) -> RunChange:
    ref = rb if rb is not None else ra
    assert ref is not None
    ci_a = a.cis.get(ra.path) if ra else None
    ci_b = b.cis.get(rb.path) if rb else None
    flags_a = {g for g, on in (ra.guard_flags if ra else {}).items() if on}
    flags_b = {g for g, on in (rb.guard_flags if rb else {}).items() if on}
    notes: list[str] = []
    regression = False
    change: Change
    if ra is None:
        change = "added"
    elif rb is None:
        change = "missing"
    else:
        overlap = _overlap(ci_a, ci_b)
        flips = [
            name
            for name, x, y in (
                ("status", ra.status, rb.status),
                ("gates", ra.passed, rb.passed),
                ("requirement", ra.requirement_met, rb.requirement_met),
            )
            if x != y
        ]
        notes += [f"{n} flipped" for n in flips]
        if overlap is False:
            notes.append("CIs do not overlap")
        if flags_a != flags_b:
            notes.append("guard signals changed")
        change = "changed" if flips or overlap is False or flags_a != flags_b else "same"
        if ra.requirement_met is True and rb.requirement_met is False:
            regression = True
            notes.append("met its requirement in A, fails it in B")
    ratio_a, ratio_b = (ra.ratio if ra else None), (rb.ratio if rb else None)
    return RunChange(
        model=ref.model,
        model_dir=_model_dir(ref),
        scenario=ref.scenario,
        run=ref.run,
        category=ref.category,
        strictness=ref.strictness,
        change=change,
        status_a=ra.status if ra else None,
        status_b=rb.status if rb else None,
        passed_a=ra.passed if ra else None,
        passed_b=rb.passed if rb else None,
        requirement_met_a=ra.requirement_met if ra else None,
        requirement_met_b=rb.requirement_met if rb else None,
        ratio_a=ratio_a,
        ratio_b=ratio_b,
        ratio_delta=ratio_b - ratio_a if ratio_a is not None and ratio_b is not None else None,
        ci_a=ci_a,
        ci_b=ci_b,
        ci_overlap=_overlap(ci_a, ci_b),
        guards_gained=sorted(flags_b - flags_a) if ra and rb else [],  # matched runs only
        guards_lost=sorted(flags_a - flags_b) if ra and rb else [],
        weight_sha256_a=_digests(a.manifest).get(ra.model) if ra else None,
        weight_sha256_b=_digests(b.manifest).get(rb.model) if rb else None,
        regression=regression,
        notes=notes,
    )


def _requirements(a: FinalVerdict, b: FinalVerdict) -> list[RequirementChange]:
    ra = {r.requirement: r for r in a.requirements}
    rb = {r.requirement: r for r in b.requirements}
    out = []
    for name in sorted(set(ra) | set(rb)):
        x, y = ra.get(name), rb.get(name)
        change: Literal["same", "newly_failed", "fixed", "added", "missing"]
        if x is None:
            change = "added"
        elif y is None:
            change = "missing"
        elif x.passed and not y.passed:
            change = "newly_failed"
        elif not x.passed and y.passed:
            change = "fixed"
        else:
            change = "same"
        out.append(
            RequirementChange(
                requirement=name,
                passed_a=x.passed if x else None,
                passed_b=y.passed if y else None,
                applicable_a=x.applicable if x else None,
                applicable_b=y.applicable if y else None,
                change=change,
            )
        )
    return out


def _models(a: Manifest, b: Manifest) -> list[ModelChange]:
    da, db = _digests(a), _digests(b)
    out = []
    for name in sorted(set(da) | set(db)):
        change: Change = (
            "added"
            if name not in da
            else "missing"
            if name not in db
            else ("same" if da[name] == db[name] else "changed")
        )
        out.append(ModelChange(model=name, weight_sha256_a=da.get(name),
                               weight_sha256_b=db.get(name), change=change))  # fmt: skip
    return out


def diff_packs(a: DiffInput, b: DiffInput) -> PackDiff:
    runs_a = {_key(r): r for r in a.verdict.records}
    runs_b = {_key(r): r for r in b.verdict.records}
    runs = [_run(runs_a.get(k), runs_b.get(k), a, b) for k in sorted(set(runs_a) | set(runs_b))]
    reqs = _requirements(a.verdict, b.verdict)
    models = _models(a.manifest, b.manifest)
    va, vb = a.verdict.verdict, b.verdict.verdict
    verdict_change: Literal["same", "PASS->FAIL", "FAIL->PASS"] = (
        "same" if va == vb else ("PASS->FAIL" if va == "PASS" else "FAIL->PASS")
    )
    regressions: list[str] = []
    if verdict_change == "PASS->FAIL":
        regressions.append("verdict PASS -> FAIL")
    regressions += [f"requirement {r.requirement} newly failed" for r in reqs
                    if r.change == "newly_failed"]  # fmt: skip
    regressions += [
        f"{r.model_dir}/{r.scenario}/run_{r.run}: met its requirement in A, fails it in B"
        for r in runs
        if r.regression
    ]
    return PackDiff(
        a=a.side,
        b=b.side,
        verdict_change=verdict_change,
        tool_changed=(a.side.tool_version, a.side.tool_source_revision)
        != (b.side.tool_version, b.side.tool_source_revision),
        model_changed=any(m.change != "same" for m in models),
        models=models,
        requirements=reqs,
        runs=runs,
        counts=DiffCounts(
            runs_a=len(runs_a),
            runs_b=len(runs_b),
            matched=len(set(runs_a) & set(runs_b)),
            changed=sum(r.change == "changed" for r in runs),
            status_flips=sum(r.status_a != r.status_b for r in runs if r.change == "changed"),
            added=sum(r.change == "added" for r in runs),
            missing=sum(r.change == "missing" for r in runs),
            ci_disjoint=sum(r.ci_overlap is False for r in runs),
            requirements_newly_failed=sum(r.change == "newly_failed" for r in reqs),
            requirements_fixed=sum(r.change == "fixed" for r in reqs),
            regressions=len(regressions),
        ),
        regression=bool(regressions),
        regressions=regressions,
    )
