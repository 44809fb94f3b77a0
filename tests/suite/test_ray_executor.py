"""``--executor ray`` on a real local Ray cluster (2 CPUs, auth disabled, one per module):
the same verdict and bit-identical numbers as the local executor, resume across executors
in both directions, and the usage errors that fail before anything is measured."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.suite.test_suite_run import _env, _kill_when, _numbers, _tasks, _verdict

SCENARIOS = "quant_4bit_clean,prune_50pct_stress,nan_injection,shape_mismatch"


def _args(model: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "editproof", "suite", "--suite", "subset",
        "--models", str(model), "--out", str(out), "--device", "cpu",
        "--seq-len", "16", "--windows", "6", "--runs", "1", "--calibration-runs", "1",
        "--scenario-ids", SCENARIOS, "--quiet", *extra,
    ]  # fmt: skip


def _run(args: list[str]) -> Any:
    import subprocess

    env = {**_env(), "RAY_AUTH_MODE": "disabled"}
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    ray = pytest.importorskip("ray")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ctx = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield str(ctx.address_info["gcs_address"])
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory, tiny_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("ray") / "local"
    res = _run(_args(tiny_dir, out))
    assert res.returncode in (0, 1), res.stderr
    return out


def test_ray_gives_the_local_verdict_and_numbers(
    local_run: Path, ray_address: str, tiny_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "ray"
    res = _run(_args(tiny_dir, out, "--executor", "ray", "--ray-address", ray_address))
    assert res.returncode in (0, 1), res.stderr
    assert res.stdout.startswith("FINAL VERDICT: "), res.stdout
    assert all(t["status"] == "done" for t in _tasks(out).values())
    assert _verdict(out) == _verdict(local_run)
    assert _numbers(out) == _numbers(local_run)  # bit-identical on CPU, baseline included
    same = {p.relative_to(local_run) for p in local_run.rglob("*") if p.is_file()}
    mine = {p.relative_to(out) for p in out.rglob("*") if p.is_file()}
    assert {p for p in same ^ mine if p.parts[:2] != ("logs", "workers")} == set()
    timings = json.loads((out / "state" / "timings.json").read_text())
    actor = next(iter(timings["workers"].values()))
    assert actor["executor"] == "ray" and actor["exit_code"] == 0 and actor["tasks"] > 0
    assert actor["threads"] == 2  # a CPU actor takes the node's 2 CPUs, as a local worker would
    assert actor["imports_torch"] > 0 and actor["imports_transformers"] > 0  # each timed
    log = (out / "logs" / "tasks" / "setup__llama.log").read_text()
    assert "loading baseline" in log and "done in" in log  # the driver wrote the actor's log


def test_resume_local_then_ray_then_local(
    local_run: Path, ray_address: str, tiny_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "switch"

    def evals(tasks: dict[str, dict[str, Any]]) -> set[str]:
        return {k for k, v in tasks.items() if k.startswith("eval/") and v["status"] == "done"}

    # Local until the preset is written, then Ray until it has finished an evaluation itself.
    _kill_when(
        _args(tiny_dir, out), out, lambda t: t.get("preset/llama", {}).get("status") == "done"
    )
    done_at = {k: v for k, v in _tasks(out).items() if v["status"] == "done"}
    assert "preset/llama" in done_at
    before = evals(_tasks(out))
    ray = ["--executor", "ray", "--ray-address", ray_address]
    _kill_when(_args(tiny_dir, out, "--resume", *ray), out, lambda t: len(evals(t)) > len(before))
    for tid, v in _tasks(out).items():
        if v["status"] == "done":
            assert done_at.get(tid, v) == v, f"{tid} ran again after it was done"
            done_at[tid] = v
    assert len(evals(_tasks(out))) > len(before)
    res = _run(_args(tiny_dir, out, "--resume"))  # and back to the local executor
    assert res.returncode in (0, 1), res.stderr
    final = _tasks(out)
    for tid, v in done_at.items():
        assert final[tid]["finished"] == v["finished"] and final[tid]["outputs"] == v["outputs"]
    assert all(v["status"] == "done" for v in final.values())
    assert _verdict(out) == _verdict(local_run)
    assert _numbers(out) == _numbers(local_run)


def test_missing_ray_fails_before_anything(
    cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # importlib finds no ray
    out = tmp_path / "r"
    res = cli("suite", "--suite", "demo", "--out", str(out), "--executor", "ray")
    assert res.code == 2
    assert "--executor ray needs the ray extra: pip install 'editproof[ray]'" in res.err
    assert not out.exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--ray-address", "127.0.0.1:6379"], "--ray-address needs --executor ray"),
        (["--executor", "ray", "--devices", "0"], "--devices is for the local executor"),
        (["--executor", "dask"], "--executor must be local or ray"),
    ],
)
def test_executor_usage_errors(
    cli: Callable[..., Any], tmp_path: Path, flags: list[str], message: str
) -> None:
    out = tmp_path / "r"
    res = cli("suite", "--suite", "demo", "--out", str(out), *flags)
    assert res.code == 2 and message in res.err
    assert not out.exists()


def test_timeout_kills_the_actor_and_gives_up(
    ray_address: str, tiny_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "t"
    ray = ["--executor", "ray", "--ray-address", ray_address, "--task-timeout", "0.001"]
    res = _run(_args(tiny_dir, out, "--scenario-ids", "nan_injection", *ray))
    assert res.returncode == 1, res.stderr  # every attempt timed out: the verdict fails
    setup = _tasks(out)["setup/llama"]
    assert setup["status"] == "failed" and setup["attempts"] == 3
    errors = json.loads((out / "state" / "errors.json").read_text())["errors"]
    tries = [e for e in errors if e["task"] == "setup/llama" and not e["final"]]
    assert [e["kind"] for e in tries] == ["timeout"] * 3
    workers = json.loads((out / "state" / "timings.json").read_text())["workers"]
    assert len(workers) == 3 and all(w["exit_code"] == "killed (timeout)" for w in workers.values())


def test_a_dead_actor_is_replaced_and_its_task_retried(
    local_run: Path, ray_address: str, tiny_dir: Path, tmp_path: Path
) -> None:
    import signal
    import sqlite3
    import subprocess
    import time

    out = tmp_path / "d"
    args = _args(tiny_dir, out, "--executor", "ray", "--ray-address", ray_address)
    env = {**_env(), "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    killed = False
    deadline = time.time() + 300
    while not killed and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
        if _tasks(out).get("setup/llama", {}).get("status") != "running":
            continue
        db = sqlite3.connect(out / "state" / "state.sqlite")
        try:
            row = db.execute("SELECT pid FROM workers WHERE task='setup/llama'").fetchone()
        finally:
            db.close()
        if row and row[0]:
            os.kill(row[0], signal.SIGKILL)  # the actor's process, mid-task
            killed = True
    _, stderr = proc.communicate(timeout=600)
    assert killed, "the setup task was not seen running on an actor"
    assert proc.returncode in (0, 1), stderr
    tasks = _tasks(out)
    assert all(v["status"] == "done" for v in tasks.values()), tasks
    assert tasks["setup/llama"]["attempts"] == 2
    errors = json.loads((out / "state" / "errors.json").read_text())["errors"]
    assert any(e["task"] == "setup/llama" and e["kind"] == "worker_died" for e in errors)
    assert _numbers(out) == _numbers(local_run)


def test_actor_gpus() -> None:
    from editproof.errors import UsageError
    from editproof.suite.ray_executor import actor_gpus

    gib = 1 << 30
    assert actor_gpus("cpu", 8, 10 * gib, 80 * gib) == 0
    assert actor_gpus("auto", 0, 10 * gib, None) == 0  # a CPU-only cluster
    assert actor_gpus("auto", 8, 10 * gib, 80 * gib) == 1
    assert actor_gpus("auto", 8, None, None) == 1  # sizes unknown: one GPU
    assert actor_gpus("cuda", 8, 140 * gib, 80 * gib) == 3  # a group: 140 x 1.25 / 80
    with pytest.raises(UsageError, match="the Ray cluster has no GPU"):
        actor_gpus("cuda", 0, None, None)


def test_actor_cpus() -> None:
    from editproof.suite.ray_executor import actor_cpus

    assert actor_cpus(0, [2.0]) == 2  # a CPU actor takes the host, as the local CPU slot does
    assert actor_cpus(0, [4.0, 64.0]) == 64  # the largest node (it fits there)
    assert actor_cpus(1, [64.0]) == 1  # beside GPUs
    assert actor_cpus(0, []) == 1


def test_written_outputs_carry_the_file_digests(tmp_path: Path) -> None:
    from editproof.fileio import file_sha256
    from editproof.suite.task_io import write_outputs

    outputs = {"m/reports/s/run_1/evaluation.report.json": '{"a": "é"}\n', "presets/p.yaml": "x"}
    digests = write_outputs(tmp_path, outputs)
    assert digests == {rel: file_sha256(tmp_path / rel) for rel in outputs}
    assert [p.name for p in tmp_path.rglob(".*")] == []
