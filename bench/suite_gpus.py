"""The same suite on one GPU and on every GPU of the host: makespan, speed-up, same numbers,
GPU use; optionally a model that spans all GPUs.

    python bench/suite_gpus.py --models mistral-7b,qwen2.5-14b --random --workdir /tmp/ep
    python bench/suite_gpus.py --models mistral-7b,qwen2.5-14b --random --only one
    python bench/suite_gpus.py --span qwen1.5-72b --only none --workdir /tmp/ep \\
        --span-args="--scenario-ids nan_injection,svd_rank32_l31_clean --runs 1"

Models are random-init stand-ins of real shapes (bench/_models.py): saved checkpoints, or
with ``--random`` ``random:`` sources drawn on the GPUs at load (no disk). Each run is
`editproof suite --suite subset` (every subset scenario, default run counts, unless suite
arguments follow `--`): with `--devices 0` (the models one after the other on one GPU) and
with every GPU (one worker per model at first; a GPU that frees up takes a replica of the
model with the most work left). While a run goes, nvidia-smi is sampled every 0.5 s for each
GPU's memory in use and utilisation. `--span MODEL` runs MODEL alone with no `--devices`:
placement gives it as many GPUs as its weights need. `--json FILE` writes every figure and a
digest of every report's per-window numbers, to compare runs made in separate calls.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from suite import _save_model


def _numbers(run: Path) -> dict[str, str]:
    """Report path (without the run dir) -> sha256 of its per-window numbers and status."""
    out = {}
    for path in sorted(run.rglob("evaluation.report.json")):
        r = json.loads(path.read_text())
        key = [r["subject"]["final"], r["subject"]["preview"], r["baseline"]["final"],
               r["primary_metric"], r["status"]]  # fmt: skip
        blob = json.dumps(key, sort_keys=True).encode()
        out[str(path.relative_to(run))] = hashlib.sha256(blob).hexdigest()
    return out


class GpuSampler:
    """Peak memory in use and mean utilisation per GPU, from nvidia-smi every 0.5 s."""

    def __init__(self) -> None:
        self.peak: dict[str, int] = {}
        self.util: dict[str, list[int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> GpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        exe = shutil.which("nvidia-smi")
        while exe and not self._stop.wait(0.5):
            try:
                out = subprocess.run(
                    [exe, "--query-gpu=index,memory.used,utilization.gpu",
                     "--format=csv,noheader,nounits"],
                    capture_output=True, text=True, timeout=10,
                ).stdout  # fmt: skip
            except (OSError, subprocess.SubprocessError):
                continue
            for line in out.splitlines():
                idx, mem, util = (p.strip() for p in line.split(","))
                self.peak[idx] = max(self.peak.get(idx, 0), int(mem))
                self.util.setdefault(idx, []).append(int(util))

    def summary(self) -> dict[str, Any]:
        return {
            idx: {"peak_mib": self.peak[idx],
                  "mean_util_pct": round(sum(u) / len(u), 1) if u else None,
                  "busy_share": round(sum(1 for x in u if x > 0) / len(u), 3) if u else None}
            for idx, u in sorted(self.util.items())
        }  # fmt: skip


def _suite(models: list[str], out: Path, devices: str | None, extra: list[str]) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "editproof", "suite", "--suite", "subset", "--quiet"]
    cmd += ["--models", ",".join(models), "--out", str(out), *extra]
    if devices is not None:
        cmd += ["--devices", devices]
    t0 = time.perf_counter()
    with GpuSampler() as gpus:
        res = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    state = out / "state" / "timings.json"
    timings = json.loads(state.read_text()) if state.is_file() else {}
    tasks = _task_rows(out)
    return {"devices": devices or "auto", "wall_s": round(wall, 2), "rc": res.returncode,
            "stdout": res.stdout.strip(), "stderr": res.stderr[-800:],
            "gpus": gpus.summary(), "workers": timings.get("workers", {}),
            "tasks_by_worker": tasks, "tokens_per_s": _rates(out)}  # fmt: skip


def _task_rows(run: Path) -> dict[str, int]:
    import sqlite3

    db = run / "state" / "state.sqlite"
    if not db.is_file():
        return {}
    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT worker, COUNT(*) FROM tasks GROUP BY worker").fetchall()
    finally:
        con.close()
    return {str(w): int(n) for w, n in rows}


def _rates(run: Path) -> dict[str, float]:
    """Mean subject-arm tokens/s per model folder over its evaluation reports."""
    rates: dict[str, list[float]] = {}
    for path in run.rglob("evaluation.report.json"):
        r = json.loads(path.read_text())
        model = path.relative_to(run).parts[0]
        rates.setdefault(model, []).append(float(r["subject"]["telemetry"]["tokens_per_s"]))
    return {k: round(sum(v) / len(v), 1) for k, v in rates.items()}


def main() -> None:
    import torch

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="mistral-7b,llama-1b")
    p.add_argument("--workdir", default="/tmp/editproof-bench-gpus")
    p.add_argument("--random", action="store_true", help="random: sources drawn on the GPUs")
    p.add_argument("--only", choices=["both", "one", "all", "none"], default="both")
    p.add_argument("--group", action="store_true", help="also the first model on a GPU group")
    p.add_argument("--span", help="a shape run alone, placed by its size (random: source)")
    p.add_argument("--span-args", default="", help="suite arguments for the --span run")
    p.add_argument("--json", help="write every figure here")
    p.add_argument("extra", nargs="*")
    args = p.parse_args()
    n = torch.cuda.device_count()
    print(f"device: {n} x {torch.cuda.get_device_name(0) if n else 'no GPU'}, "
          f"torch {torch.__version__}", flush=True)  # fmt: skip
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    from _models import config_dir

    names = [m for m in args.models.split(",") if m] if args.only != "none" else []
    models = [config_dir(m, work) if args.random else _save_model(m, work, "cuda") for m in names]
    stamp = int(time.time())
    runs: dict[str, dict[str, Any]] = {}
    plans = {"one": "0", "all": ",".join(map(str, range(n)))}
    for key in ("one", "all"):
        if args.only in ("both", key):
            out = work / f"{key}-{stamp}"
            runs[key] = _suite(models, out, plans[key], args.extra)
            runs[key]["numbers"] = _numbers(out)
            print(json.dumps({k: v for k, v in runs[key].items() if k != "numbers"}), flush=True)
    if args.group:
        out = work / f"group-{stamp}"
        runs["group"] = _suite(models[:1], out, "+".join(map(str, range(n))), args.extra)
        print(json.dumps(runs["group"]), flush=True)
    if args.span:
        out = work / f"span-{stamp}"
        runs["span"] = _suite([config_dir(args.span, work)], out, None, args.span_args.split())
        runs["span"]["numbers"] = _numbers(out)
        print(json.dumps({k: v for k, v in runs["span"].items() if k != "numbers"}), flush=True)
    if "one" in runs and "all" in runs:
        one, every = runs["one"]["wall_s"], runs["all"]["wall_s"]
        same = runs["one"]["numbers"] == runs["all"]["numbers"]
        count = len(runs["one"]["numbers"])
        print(f"GPUs {n}: 1 GPU {one:.1f}s, {n} GPUs {every:.1f}s, speed-up {one / every:.2f}x; "
              f"same per-window numbers: {same} ({count} reports)")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
