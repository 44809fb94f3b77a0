"""``junit.xml``: the verdict as JUnit XML, which GitLab, GitHub and Jenkins read as it is.

One ``<testsuite>`` per model, one ``<testcase>`` per planned scenario run
(``classname="<model>.<category>"``, ``name="<scenario>[run_<n>]"``), in the records' order:

- a run with a report that verdict requirements name is a ``<failure>`` whose ``type`` is
  the first requirement and whose message names every requirement and the report path;
- a task failure (``ERROR``) or a planned run with no report (``MISSING``) is an
  ``<error>`` (its message names the requirements it fails, if the scenario counts);
- a run of a skipped scenario is ``<skipped>`` with the skip reason;
- anything else passed: its run showed what its scenario requires.

A last ``<testsuite name="editproof.verdict">`` holds one test case per requirement of the
verdict, so a FAIL verdict is red even when no single run is to blame. Built with
``xml.etree``: names and messages are escaped; characters XML 1.0 cannot hold are replaced.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable

from editproof.verdict.export_records import RecordRow
from editproof.verdict.model import FinalVerdict

VERDICT_SUITE = "editproof.verdict"
# Characters XML 1.0 cannot carry even escaped (C0 controls but tab, LF, CR; surrogates...).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _text(value: str) -> str:
    return _NOT_XML.sub("\ufffd", value)


def _seconds(value: float) -> str:
    return f"{value:.3f}"


def testcase_name(row: RecordRow) -> str:
    return f"{row.scenario}[run_{row.run}]"


def classname(row: RecordRow) -> str:
    return f"{row.model}.{row.category}"


def _sub(parent: ET.Element, tag: str, **attrs: str) -> ET.Element:
    return ET.SubElement(parent, tag, {k: _text(v) for k, v in attrs.items()})


Key = tuple[str, str, int]


def _details(v: FinalVerdict) -> dict[Key, list[str]]:
    """Per run, one line per failed requirement that names it: its message and the run's
    reasons."""
    out: dict[Key, list[str]] = {}
    for fr in v.failed_requirements:
        for run in fr.failures:
            why = f" ({'; '.join(run.reasons)})" if run.reasons else ""
            out.setdefault((run.model, run.scenario, run.run), []).append(
                f"{fr.requirement}: {fr.message}{why}"
            )
    return out


def _case(suite: ET.Element, row: RecordRow, details: dict[Key, list[str]]) -> str | None:
    """Append the run's test case; returns its outcome (failure/error/skipped) or None."""
    case = _sub(
        suite,
        "testcase",
        classname=classname(row),
        name=testcase_name(row),
        time=_seconds(row.seconds or 0.0),
    )
    report = row.report_path or "no report"
    names = ", ".join(row.failed_requirements)
    lines = details.get((row.model, row.scenario, row.run), [])
    lines = [*lines, f"report: {report}", f"status: {row.status}"]
    if row.reasons:
        lines.append(f"reasons: {', '.join(row.reasons)}")
    if row.note:
        lines.append(f"note: {row.note}")
    if row.status == "SKIPPED":
        _sub(case, "skipped", message=f"skipped: {row.note}")
        return "skipped"
    if row.status in ("ERROR", "MISSING"):
        failed = f"; requirement {names} failed" if names else ""
        el = _sub(case, "error", message=f"{row.note}{failed}; {report}", type=row.status.lower())
        el.text = _text("\n".join(lines))
        return "error"
    if row.failed_requirements:
        el = _sub(
            case,
            "failure",
            message=f"requirement {names} failed; report {report}",
            type=row.failed_requirements[0],
        )
        el.text = _text("\n".join(lines))
        return "failure"
    return None


def _close(suite: ET.Element, outcomes: list[str | None], seconds: float) -> None:
    suite.set("tests", str(len(outcomes)))
    suite.set("failures", str(outcomes.count("failure")))
    suite.set("errors", str(outcomes.count("error")))
    suite.set("skipped", str(outcomes.count("skipped")))
    suite.set("time", _seconds(seconds))


def _properties(suite: ET.Element, props: Iterable[tuple[str, str]]) -> None:
    el = _sub(suite, "properties")
    for name, value in props:
        _sub(el, "property", name=name, value=value)


def junit_xml(v: FinalVerdict, rows: list[RecordRow]) -> str:
    """The JUnit document (UTF-8, with an XML declaration) of a verdict and its records."""
    root = ET.Element("testsuites", {"name": _text(f"editproof suite {v.suite}")})
    details = _details(v)
    total: list[str | None] = []
    seconds = 0.0
    for model in v.models:
        of_model = [r for r in rows if r.model == model]
        suite = _sub(root, "testsuite", name=model)
        weights = next((r.model_weight_sha256 for r in of_model if r.model_weight_sha256), None)
        _properties(
            suite,
            [
                ("suite", v.suite),
                ("verdict", v.verdict),
                ("model_weight_sha256", weights or ""),
                ("catalogue_digest", v.catalogue.digest),
                ("inputs_digest", v.inputs_digest),
            ],
        )
        outcomes = [_case(suite, r, details) for r in of_model]
        spent = sum(r.seconds or 0.0 for r in of_model)
        _close(suite, outcomes, spent)
        total += outcomes
        seconds += spent
    total += _verdict_suite(root, v)
    root.set("tests", str(len(total)))
    root.set("failures", str(total.count("failure")))
    root.set("errors", str(total.count("error")))
    root.set("time", _seconds(seconds))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=False).join(
        ['<?xml version="1.0" encoding="UTF-8"?>\n', "\n"]
    )


def _verdict_suite(root: ET.Element, v: FinalVerdict) -> list[str | None]:
    suite = _sub(root, "testsuite", name=VERDICT_SUITE)
    _properties(suite, [("suite", v.suite), ("verdict", v.verdict)])
    outcomes: list[str | None] = []
    for outcome in v.requirements:
        case = _sub(
            suite,
            "testcase",
            classname=f"{VERDICT_SUITE}.requirements",
            name=outcome.requirement,
            time=_seconds(0.0),
        )
        if not outcome.passed:
            failed = [f for f in v.failed_requirements if f.requirement == outcome.requirement]
            el = _sub(
                case,
                "failure",
                message=f"requirement {outcome.requirement} failed: {outcome.failed} of "
                f"{outcome.checked} checked",
                type=outcome.requirement,
            )
            el.text = _text("\n".join([outcome.meaning, *(f.message for f in failed)]))
            outcomes.append("failure")
        elif not outcome.applicable:
            _sub(case, "skipped", message=f"not applicable: {outcome.meaning}")
            outcomes.append("skipped")
        else:
            outcomes.append(None)
    _close(suite, outcomes, 0.0)
    return outcomes
