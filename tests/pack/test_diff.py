"""``editproof diff``: the pure comparison on verified packs' verdicts (edited to make each kind
of change), and the command on real packs: exit codes, JSON contract, archives, a pack that
does not verify."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest

from editproof.pack.archive import write_tar
from editproof.pack.diff import DiffInput, PackSide, diff_input, diff_packs
from editproof.pack.policy import VerifyPolicy
from editproof.pack.verify import verify_pack
from tests.cli._cli import Result
from tests.pack.test_attacks import tamper_report

Cli = Callable[..., Result]
CONTRACT = Path(__file__).resolve().parents[2] / "contracts" / "proof_pack_diff.schema.json"


def side_of(pack: Path) -> DiffInput:
    res = verify_pack(pack, VerifyPolicy.default())
    assert res.exit_code == 0 and res.manifest is not None and res.manifest_sha256
    m = res.manifest
    side = PackSide(pack=str(pack), kind=res.kind, verdict=m.verdict, suite=m.suite,
                    tool_version=m.tool.version, tool_source_revision=m.tool.source_revision,
                    manifest_sha256=res.manifest_sha256, generated_at=m.generated_at,
                    signatures=res.signatures)  # fmt: skip
    return diff_input(side, m, res.files)


@pytest.fixture(scope="module")
def a(pass_run: Path) -> DiffInput:
    return side_of(pass_run / "proof_pack")


@pytest.fixture(scope="module")
def f(fail_run: Path) -> DiffInput:
    """The FAIL pack: a clean scenario, so its run has a ratio CI."""
    return side_of(fail_run / "proof_pack")


def edited(base: DiffInput, index: int = 0, **record: object) -> DiffInput:
    recs = list(base.verdict.records)
    recs[index] = recs[index].model_copy(update=record)
    return DiffInput(base.side, base.manifest, base.verdict.model_copy(update={"records": recs}),
                     base.cis)  # fmt: skip


def test_identical_packs_have_no_change(a: DiffInput, f: DiffInput) -> None:
    for x in (a, f):
        d = diff_packs(x, x)
        assert not d.regression and not d.changed and d.verdict_change == "same"
        assert d.counts.matched == len(x.verdict.records) == len(d.runs) > 0
        assert all(r.change == "same" and r.ci_overlap is not False for r in d.runs)
        assert all(m.change == "same" and m.weight_sha256_a for m in d.models)
    d = diff_packs(f, f)
    assert all(r.ci_overlap is True and r.ratio_delta == 0 for r in d.runs)


def test_a_run_that_stops_meeting_its_requirement_is_a_regression(a: DiffInput) -> None:
    assert a.verdict.records[0].requirement_met is True
    b = edited(a, status="FAIL", requirement_met=False, passed=not a.verdict.records[0].passed)
    d = diff_packs(a, b)
    r = next(x for x in d.runs if x.regression)
    assert r.regression and r.status_b == "FAIL" and "requirement flipped" in r.notes
    assert d.regression and d.counts.regressions == 1 and "fails it in B" in d.regressions[0]
    assert not diff_packs(b, a).regression  # fixed, not regressed


def test_ratio_ci_and_guard_changes(f: DiffInput) -> None:
    rec = f.verdict.records[0]
    assert f.cis[rec.path] is not None and rec.ratio is not None
    far = {rec.path: (50.0, 60.0)}
    b = DiffInput(f.side, f.manifest, edited(f, ratio=55.0,
                  guard_flags={**rec.guard_flags, "zz_new_guard": True}).verdict, far)  # fmt: skip
    d = diff_packs(f, b)
    r = next(x for x in d.runs if x.scenario == rec.scenario and x.run == rec.run)
    assert r.change == "changed" and r.ci_overlap is False and r.ci_b == (50.0, 60.0)
    assert r.ratio_delta == pytest.approx(55.0 - (rec.ratio or 0.0))
    assert r.guards_gained == ["zz_new_guard"] and r.guards_lost == []
    assert not d.regression and d.changed and d.counts.ci_disjoint == 1


def test_requirements_verdict_models_and_missing_runs(a: DiffInput) -> None:
    v = a.verdict
    reqs = [r.model_copy(update={"passed": False}) if i == 0 else r
            for i, r in enumerate(v.requirements)]  # fmt: skip
    models = [m.model_copy(update={"weight_sha256": "f" * 64}) for m in a.manifest.models]
    b = DiffInput(
        a.side,
        a.manifest.model_copy(update={"models": models}),
        v.model_copy(update={"verdict": "FAIL", "requirements": reqs, "records": v.records[1:]}),
        a.cis,
    )
    d = diff_packs(a, b)
    assert d.verdict_change == "PASS->FAIL" and d.model_changed
    assert [r.change for r in d.requirements].count("newly_failed") == 1
    assert d.counts.missing == 1 and d.counts.requirements_newly_failed == 1
    assert d.regressions[0] == "verdict PASS -> FAIL" and d.counts.regressions == 2
    back = diff_packs(b, a)
    assert back.counts.added == 1 and back.counts.requirements_fixed == 1 and not back.regression


# --- the command -------------------------------------------------------------------------------


def test_cli_same_pack_dir_and_archive(cli: Cli, pack: Path, tmp_path: Path) -> None:
    tar = tmp_path / "p.proofpack.tar"
    write_tar(pack, tar)
    res = cli("diff", str(pack), str(tar))
    assert res.code == 0, res.err
    assert "no regression" in res.out and "(archive)" in res.out


def test_cli_pass_to_fail_is_a_regression(cli: Cli, pack: Path, fail_pack: Path,
                                          keypair: tuple[Path, Path]) -> None:  # fmt: skip
    res = cli("diff", "--json", "--strict", "--key", str(keypair[1]), str(pack), str(fail_pack))
    assert res.code == 1, res.err
    data = json.loads(res.out)
    jsonschema.validate(data, json.loads(CONTRACT.read_text()))
    assert data["format"] == "editproof.pack-diff" and data["schema_version"] == 1
    assert data["verdict_change"] == "PASS->FAIL" and data["regression"] is True
    assert data["counts"]["added"] >= 1 and data["counts"]["missing"] >= 1  # other scenarios
    unmatched = [r for r in data["runs"] if r["change"] in ("added", "missing")]
    assert unmatched and not any(r["guards_gained"] or r["guards_lost"] for r in unmatched)
    assert data["a"]["tool_version"] and data["b"]["manifest_sha256"]
    assert cli("diff", str(fail_pack), str(pack)).code == 0  # FAIL -> PASS: no regression
    assert cli("diff", "--fail-on", "change", str(fail_pack), str(pack)).code == 1
    assert cli("diff", "--fail-on", "never", str(pack), str(fail_pack)).code == 0
    res = cli("diff", str(pack), str(fail_pack))
    assert res.code == 1 and "REGRESSION" in res.out and "PASS->FAIL" in res.out


def test_cli_a_pack_that_does_not_verify(cli: Cli, pack: Path, fail_pack: Path,
                                         tmp_path: Path) -> None:  # fmt: skip
    tamper_report(pack)
    res = cli("diff", str(fail_pack), str(pack))
    assert res.code == 6 and res.err.startswith("error: pack B (") and res.out == ""
    res = cli("diff", "--strict", str(fail_pack), str(pack))  # no trusted key: A fails first
    assert res.code == 5 and "pack A" in res.err
    assert cli("diff", str(tmp_path / "nope"), str(pack)).code == 3
    assert cli("diff", "--fail-on", "sometimes", str(pack), str(pack)).code == 2
