"""The same suite on one GPU and on every GPU of the host: makespan, speed-up, same numbers.

    python bench/suite_gpus.py --models mistral-7b,llama-1b --workdir /tmp/ep \\
        -- --scenario-ids quant_4bit_clean,nan_injection --runs 1 --calibration-runs 1

Builds (once) random-init models of the named shapes (bench/_models.py), then runs
`editproof suite --suite subset --models <dirs>` with `--devices 0` and with every visible
GPU, and compares wall time and every report's per-window numbers. `--group` adds a third
run that gives the first model a group of all GPUs (`--devices 0+1+...`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from suite import _save_model


def _numbers(run: Path) -> dict[str, Any]:
    out = {}
    for path in sorted(run.rglob("evaluation.report.json")):
        r = json.loads(path.read_text())
        out[str(path.relative_to(run))] = r["subject"]["final"]["mean_nll"]
    return out


def _suite(models: list[str], out: Path, devices: str, extra: list[str]) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "editproof", "suite", "--suite", "subset", "--quiet"]
    cmd += ["--models", ",".join(models), "--out", str(out), "--devices", devices, *extra]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    timings = json.loads((out / "state" / "timings.json").read_text())
    return {"devices": devices, "wall_s": wall, "rc": res.returncode, "stdout": res.stdout.strip(),
            "stderr": res.stderr[-500:], "workers": timings["workers"]}  # fmt: skip


def main() -> None:
    import torch

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="mistral-7b,llama-1b")
    p.add_argument("--workdir", default="/tmp/editproof-bench-gpus")
    p.add_argument("--group", action="store_true")
    p.add_argument("extra", nargs="*")
    args = p.parse_args()
    n = torch.cuda.device_count()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    models = [_save_model(m, work, "cuda") for m in args.models.split(",")]
    stamp = int(time.time())
    runs = [_suite(models, work / f"one-{stamp}", "0", args.extra)]
    runs.append(_suite(models, work / f"all-{stamp}", ",".join(map(str, range(n))), args.extra))
    if args.group:
        group = "+".join(map(str, range(n)))
        runs.append(_suite(models[:1], work / f"group-{stamp}", group, args.extra))
    for r in runs:
        print(json.dumps(r))
    same = _numbers(work / f"one-{stamp}") == _numbers(work / f"all-{stamp}")
    one, every = runs[0]["wall_s"], runs[1]["wall_s"]
    print(f"GPUs {n}: 1 GPU {one:.1f}s, {n} GPUs {every:.1f}s, speed-up {one / every:.2f}x; "
          f"same per-window numbers: {same}")  # fmt: skip


if __name__ == "__main__":
    main()
