"""A whole suite on a tiny random-init model: worker processes, verdict files, resume after
SIGKILL at several points (same verdict, same per-window numbers, no task done twice, no
partial files)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

SCENARIOS = "quant_4bit_clean,prune_50pct_stress,nan_injection,shape_mismatch,norm_collapse"


def _args(model: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "editproof", "suite", "--suite", "subset",
        "--models", str(model), "--out", str(out), "--device", "cpu",
        "--seq-len", "16", "--windows", "6", "--runs", "2", "--calibration-runs", "1",
        "--scenario-ids", SCENARIOS, "--repeats", "2", *extra,
    ]  # fmt: skip


def _env() -> dict[str, str]:
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[2] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=_env(), capture_output=True, text=True, timeout=600)


def _tasks(run: Path) -> dict[str, dict[str, Any]]:
    if not (run / "state" / "state.sqlite").is_file():
        return {}
    db = sqlite3.connect(run / "state" / "state.sqlite")
    try:
        cur = db.execute("SELECT id, status, attempts, finished, outputs FROM tasks")
        return {r[0]: {"status": r[1], "attempts": r[2], "finished": r[3], "outputs": r[4]}
                for r in cur}  # fmt: skip
    except sqlite3.Error:
        return {}
    finally:
        db.close()


def _numbers(run: Path) -> dict[str, Any]:
    """Per-window numbers of every report and the baseline, keyed by relative path."""
    out: dict[str, Any] = {}
    for path in sorted(run.rglob("evaluation.report.json")):
        r = json.loads(path.read_text())
        out[str(path.relative_to(run))] = [
            r["subject"]["final"]["mean_nll"],
            r["baseline"]["final"]["mean_nll"],
            r["primary_metric"]["ratio"],
            r["status"],
        ]
    base = json.loads(next(run.rglob("baseline.json")).read_text())
    out["baseline"] = [base["preview"]["mean_nll"], base["final"]["mean_nll"]]
    return out


def _verdict(run: Path) -> dict[str, Any]:
    v = json.loads((run / "reports" / "final_verdict.json").read_text())
    return {"verdict": v["verdict"], "failed": sorted(f["requirement"] for f in v["failed_requirements"]),
            "records": len(v["records"])}  # fmt: skip


def _records(run: Path) -> dict[str, Any]:
    """records.jsonl, records.csv (through pandas) and junit.xml (through junitparser) of a run,
    checked against each other and the verdict: one row and one test case per planned run."""
    pd = pytest.importorskip("pandas")
    junitparser = pytest.importorskip("junitparser")
    v = json.loads((run / "reports" / "final_verdict.json").read_text())
    rows = [json.loads(line) for line in (run / "reports/records.jsonl").read_text().splitlines()]
    df = pd.read_csv(run / "reports" / "records.csv")
    assert len(df) == len(rows) and list(df["scenario"]) == [r["scenario"] for r in rows]
    with_report = [r for r in rows if r["report_path"] is not None]
    assert len(with_report) == len(v["records"])
    assert [(r["scenario"], r["run"], r["report_digest"]) for r in with_report] == [
        (r["scenario"], r["run"], r["report_digest"]) for r in v["records"]
    ]
    assert df["run"].dtype == "int64" and df["passed"].dtype == bool
    assert df["detectors_hit"].dtype == bool and df["flag_spectral"].dtype == bool
    if with_report:
        assert df["ratio"].dtype == "float64" and df["tokens_final"].notna().any()
        assert df["model_weight_sha256"].str.len().eq(64).all()
    xml = junitparser.JUnitXml.fromfile(str(run / "reports" / "junit.xml"))
    suites = list(xml)
    assert [s.name for s in suites] == [*v["models"], "editproof.verdict"]
    cases = [c for s in suites[:-1] for c in s]
    assert [c.name for c in cases] == [f"{r['scenario']}[run_{r['run']}]" for r in rows]
    return {"rows": rows, "df": df, "cases": cases, "suites": suites}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, tiny_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("suite") / "ref"
    res = _run(_args(tiny_dir, out, "--quiet"))
    assert res.returncode in (0, 1), res.stderr
    assert res.stdout.startswith("FINAL VERDICT: "), res.stdout
    return out


def test_run_dir_layout_and_verdict(reference: Path) -> None:
    run = reference
    for rel in ("state/config.json", "state/scenarios.json", "state/tuned_edit_params.json",
                "state/model_revisions.json", "state/errors.json", "state/timings.json",
                "reports/final_verdict.json", "reports/final_verdict.txt",
                "reports/category_summary.json", "reports/guard_signal_summary.json",
                "reports/guard_intervention_summary.json", "reports/scenario_signal_summary.json",
                "reports/detection_matrix.json", "reports/records.jsonl",
                "reports/records.csv", "reports/junit.xml"):  # fmt: skip
        assert (run / rel).is_file(), rel
    tasks = _tasks(run)
    assert all(t["status"] == "done" for t in tasks.values()), tasks
    reports = [p for p in run.rglob("evaluation.report.json") if "determinism" not in p.parts]
    assert len(reports) == 5 * 2  # every scenario, 2 runs each
    presets = list((run / "presets").glob("calibrated_preset_*.json"))
    assert len(presets) == 1
    report = json.loads(reports[0].read_text())
    assert "preset" in (report["policy"]["source"] or "")
    scen = json.loads((run / "state/scenarios.json").read_text())
    assert sorted(s["id"] for s in scen["scenarios"]) == sorted(SCENARIOS.split(","))
    v = json.loads((run / "reports/final_verdict.json").read_text())
    assert v["verdict"] in ("PASS", "FAIL") and len(v["records"]) == 10
    nan = [r for r in v["records"] if r["scenario"] == "nan_injection"]
    assert nan and all(r["detectors_hit"] for r in nan)  # the fault is caught on every run
    rec = _records(run)
    assert len(rec["rows"]) == len(v["records"]) == 10 and len(rec["cases"]) == 10
    assert set(rec["df"]["status"]) <= {"PASS", "FAIL"}
    assert {c.classname for c in rec["cases"]} >= {f"{v['models'][0]}.error_injection"}
    failed_runs = {(f["scenario"], f["run"]) for fr in v["failed_requirements"]
                   for f in fr["failures"]}  # fmt: skip
    for c in rec["cases"]:
        scenario, run_no = c.name.removesuffix("]").split("[run_")
        assert c.is_passed == ((scenario, int(run_no)) not in failed_runs), c.name
    revs = json.loads((run / "state/model_revisions.json").read_text())
    assert len(next(iter(revs["models"].values()))["weight_sha256"]) == 64
    assert not list(run.rglob(".*.tmp*")) and not [p for p in run.rglob(".evaluation*")]
    timings = json.loads((run / "state/timings.json").read_text())
    assert set(timings["driver"]) == {"prepare", "execute", "verdict", "total"}
    worker = next(iter(timings["workers"].values()))
    assert worker["exit_code"] == 0 and worker["imports"] > 0 and worker["tasks"] > 0
    assert worker["imports_torch"] > 0 and worker["imports_transformers"] > 0
    repeats = json.loads((run / "analysis/determinism_repeats.json").read_text())
    assert repeats["completed"] == 2 and repeats["scenario"] == "quant_4bit_clean"
    assert repeats["ratio"]["delta"] == 0.0 and repeats["numbers_match"] is True  # CPU


def test_resume_with_other_parameters_is_refused(reference: Path, tiny_dir: Path) -> None:
    res = _run(_args(tiny_dir, reference, "--resume", "--tier", "conservative"))
    assert res.returncode == 2
    assert "different parameters: tier: 'balanced' -> 'conservative'" in res.stderr


def _kill_when(
    args: list[str], out: Path, condition: Callable[[dict[str, dict[str, Any]]], bool]
) -> None:
    proc = subprocess.Popen(args, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    deadline = time.time() + 300
    try:
        while time.time() < deadline and proc.poll() is None:
            if (out / "state" / "state.sqlite").exists() and condition(_tasks(out)):
                os.killpg(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_sigkill_at_three_points_then_resume(
    reference: Path, tiny_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "killed"
    args = _args(tiny_dir, out, "--quiet")
    points: list[Callable[[dict[str, dict[str, Any]]], bool]] = [
        lambda t: any(k.startswith("setup/") and v["status"] == "running" for k, v in t.items()),
        lambda t: any(k.startswith("preset/") and v["status"] == "done" for k, v in t.items()),
        lambda t: sum(k.startswith("eval/") and v["status"] == "done" for k, v in t.items()) >= 4,
    ]
    done_at: dict[str, Any] = {}
    for k, point in enumerate(points):
        _kill_when(args if k == 0 else [*args, "--resume"], out, point)
        for tid, v in _tasks(out).items():
            if v["status"] == "done":
                assert done_at.get(tid, v) == v, f"{tid} ran again after it was done"
                done_at[tid] = v
    assert done_at, "no task finished before the kills"
    res = _run([*args, "--resume"])
    assert res.returncode in (0, 1), res.stderr
    final = _tasks(out)
    for tid, v in done_at.items():  # nothing done before a kill ran again
        assert final[tid]["finished"] == v["finished"] and final[tid]["outputs"] == v["outputs"]
    assert all(v["status"] == "done" for v in _tasks(out).values())
    assert _verdict(out) == _verdict(reference)
    assert _numbers(out) == _numbers(reference)  # bit-identical on CPU
    leftovers = [p for p in out.rglob("*") if p.name.startswith(".") and p.is_file()]
    assert leftovers == []


def test_killed_worker_is_replaced_and_its_task_retried(tiny_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "w"
    proc = subprocess.Popen(_args(tiny_dir, out, "--quiet"), env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    victim = None
    deadline = time.time() + 300
    while victim is None and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
        tasks = _tasks(out)
        running = [
            k for k, v in tasks.items() if k.startswith("eval/") and v["status"] == "running"
        ]
        if running:
            db = sqlite3.connect(out / "state" / "state.sqlite")
            try:
                row = db.execute("SELECT worker FROM tasks WHERE id=?", (running[0],)).fetchone()
                pid = db.execute("SELECT pid FROM workers WHERE id=?", (row[0],)).fetchone()
            finally:
                db.close()
            if pid and pid[0]:
                os.kill(pid[0], signal.SIGKILL)
                victim = running[0]
    stdout, stderr = proc.communicate(timeout=600)
    assert victim is not None, "no evaluation was seen running"
    assert proc.returncode in (0, 1), stderr
    assert stdout.startswith("FINAL VERDICT")
    tasks = _tasks(out)
    assert all(v["status"] == "done" for v in tasks.values()), tasks
    assert tasks[victim]["attempts"] >= 2
    errors = json.loads((out / "state" / "errors.json").read_text())["errors"]
    assert any(e["task"] == victim and e["kind"] == "worker_died" for e in errors)


def test_task_timeout_kills_and_gives_up(tiny_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "t"
    res = _run(_args(tiny_dir, out, "--quiet", "--task-timeout", "0.001"))
    assert res.returncode == 1, res.stderr  # every task timed out: the verdict fails
    tasks = _tasks(out)
    setup = next(v for k, v in tasks.items() if k.startswith("setup/"))
    assert setup["status"] == "failed" and setup["attempts"] == 3
    errors = json.loads((out / "state" / "errors.json").read_text())["errors"]
    tries = [e for e in errors if e["task"].startswith("setup/") and not e["final"]]
    assert [e["kind"] for e in tries] == ["timeout"] * 3
    verdict = json.loads((out / "reports" / "final_verdict.json").read_text())
    assert verdict["verdict"] == "FAIL" and verdict["failures"]
    rec = _records(out)  # no report at all: every planned run is a row, an error in JUnit
    assert len(rec["rows"]) == 10 and set(rec["df"]["status"]) == {"ERROR"}
    junitparser = pytest.importorskip("junitparser")
    assert all(c.result and isinstance(c.result[0], junitparser.Error) for c in rec["cases"])


def test_errors_only_judges_the_fault_scenarios(tiny_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "e"
    args = _args(tiny_dir, out, "--quiet", "--errors-only")
    i = args.index("--repeats")
    del args[i : i + 2]  # repeats re-run a clean scenario, which errors-only leaves out
    res = _run(args)
    assert res.returncode in (0, 1), res.stderr
    v = json.loads((out / "reports" / "final_verdict.json").read_text())
    assert {r["scenario"] for r in v["records"]} == {"nan_injection", "shape_mismatch",
                                                     "norm_collapse"}  # fmt: skip
    assert "--errors-only: fault scenarios only" in v["relaxations"]
    assert "scenario_coverage" not in {f["requirement"] for f in v["failed_requirements"]}
    rec = _records(out)  # the recompiled verdict's view: fault scenarios only
    assert set(rec["df"]["scenario"]) == {"nan_injection", "shape_mismatch", "norm_collapse"}


def test_replica_worker_shares_a_model_with_the_same_numbers(
    tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two slots, one model: once its first tasks are measured, the free slot loads a
    replica that takes pending tasks; every number equals a one-worker run's."""
    from editproof.suite import executor, runner

    monkeypatch.setattr(executor, "REPLICA_START_S", 0.0)
    monkeypatch.setattr(executor, "REPLICA_MARGIN", 0.0)
    monkeypatch.setenv("PYTHONPATH", _env()["PYTHONPATH"])
    one = [executor.Slot("cpu-a", "cpu", None)]
    two = [*one, executor.Slot("cpu-b", "cpu", None)]
    runs: dict[str, Path] = {}
    for name, slots in (("one", one), ("two", two)):
        runs[name] = tmp_path / name
        # Calibrate on one slot, then run the evaluations on the named slots: with the
        # setup's cost known, the second slot starts a replica at once.
        for mode, use in (("calibrate-only", one), ("run-only", slots)):
            monkeypatch.setattr(runner, "device_slots", lambda devices, device, s=use: s)
            opts = runner.SuiteOptions(
                suite="subset", models=str(tiny_dir), scenario_ids=SCENARIOS, out=runs[name],
                device="cpu", seq_len=32, windows=16, runs=2, calibration_runs=1, mode=mode,
            )  # fmt: skip
            runner.run_suite(opts)
        assert all(t["status"] == "done" for t in _tasks(runs[name]).values())
    db = sqlite3.connect(runs["two"] / "state" / "state.sqlite")
    try:
        workers = {r[0] for r in db.execute("SELECT worker FROM tasks WHERE type = 'eval'")}
    finally:
        db.close()
    assert {w.rsplit("-", 1)[0] for w in workers} == {"cpu-a", "cpu-b"}, workers
    assert _numbers(runs["two"]) == _numbers(runs["one"])
    assert _verdict(runs["two"]) == _verdict(runs["one"])


def test_a_measurer_with_another_baseline_is_refused(reference: Path) -> None:
    from editproof.errors import EditproofError
    from editproof.suite.measure import check_baseline

    text = next(reference.rglob("baseline.json")).read_text()
    stored = json.loads(text)
    check_baseline(text, dict(stored), "m")  # same numbers: accepted
    nll = list(stored["final"]["mean_nll"])
    nll[-1] += 1e-9
    other = dict(stored, final={**stored["final"], "mean_nll": nll})
    with pytest.raises(EditproofError, match=r"differs from the run's baseline\.json in final"):
        check_baseline(text, other, "m")
    with pytest.raises(EditproofError, match="in weight_sha256"):
        check_baseline(text, dict(stored, weight_sha256="0" * 64), "m")
