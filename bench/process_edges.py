"""The seconds at a process's edges: torch's import, CUDA's start, and exit.

    python bench/process_edges.py [importtime] [preload] [exit] [guards] --repeats 3

- ``importtime``: ``python -X importtime -c "import torch"``, the largest modules by
  cumulative and by own time.
- ``preload``: a child imports editproof's CLI, then torch, then starts CUDA (a tensor on
  the GPU, synchronised), with nothing started early (``none``) and with the CUDA driver's
  primary context started on a thread from its first line (``context``, as
  ``editproof._preload`` does for ``evaluate``). Each prints its own seconds.
- ``exit``: a child that holds ``--gib`` of GPU memory in 300 tensors ends normally or
  through ``os._exit``; the wall from spawn to reap minus the child's own age at its last
  line is the exit's cost.
- ``guards``: each guard's baseline measurement on the 7B shape, three times in one
  process (the first carries any first-use cost), synchronised.
- ``guardsgpu``: after a warm call, each guard's baseline measurement (and all together):
  the first call's wall, then a warm call's wall against the GPU's kernel time and the
  number of kernels launched (``--dump FILE``: the signatures, to compare two versions).
- ``guardscold``: each guard's first and second measurement, each guard in a fresh process
  after the baseline's measurement and ``warm_libraries``: its first-use cost.
- ``edgeroutes``: the RMT guard's batched token-space route against its feature-space route
  on synthetic bf16 module outputs, T = 512..4096 tokens: seconds and agreement.
- ``guardsfirst``: the first and second measurement of all guards after the baseline's,
  under torch.profiler: the ops that take the first one's extra host time.

``guards`` and ``guardsgpu`` take ``--model`` (a ``random:`` config directory, as
``bench/h200_issue9.sh`` makes) and ``--windows`` per arm.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PY = sys.executable

CHILD_PRELOAD = r"""
import sys, time
t0 = time.perf_counter()
mode = sys.argv[1]
if mode == "context":
    from editproof._preload import start
    start(0)
a = time.perf_counter()
import editproof.cli.app
cli = time.perf_counter() - a
a = time.perf_counter()
import torch
imp = time.perf_counter() - a
a = time.perf_counter()
x = torch.ones(4, device="cuda")
torch.cuda.synchronize()
cuda = time.perf_counter() - a
total = time.perf_counter() - t0
print(f"{mode:9s} cli {cli:.3f}  torch {imp:.3f}  cuda {cuda:.3f}  total {total:.3f}")
"""

CHILD_EXIT = r"""
import os, sys, time
import torch
gib = float(sys.argv[2])
n = 300
each = int(gib * (1 << 30) / n / 2)
keep = [torch.empty(each, dtype=torch.bfloat16, device="cuda") for _ in range(n)]
torch.cuda.synchronize()
print(time.clock_gettime(time.CLOCK_MONOTONIC), flush=True)
if sys.argv[1] == "fast":
    os._exit(0)
"""


def importtime() -> None:
    proc = subprocess.run(
        [PY, "-X", "importtime", "-c", "import torch"], capture_output=True, text=True
    )
    rows = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = line.split("|")
        try:
            own, cum = int(parts[0].split(":")[1]), int(parts[1])
        except ValueError:
            continue
        rows.append((own, cum, parts[2].rstrip()))
    print("torch import, by cumulative (s):")
    for own, cum, name in sorted(rows, key=lambda r: -r[1])[:14]:
        print(f"  {cum / 1e6:7.3f} {own / 1e6:7.3f} {name}")
    print("by own time (s):")
    for own, cum, name in sorted(rows, key=lambda r: -r[0])[:14]:
        print(f"  {own / 1e6:7.3f} {cum / 1e6:7.3f} {name.strip()}")


def preload(repeats: int) -> None:
    for _ in range(repeats):
        for mode in ("none", "context"):
            t0 = time.perf_counter()
            out = subprocess.run([PY, "-c", CHILD_PRELOAD, mode], capture_output=True, text=True)
            wall = time.perf_counter() - t0
            line = out.stdout.strip() or out.stderr.strip()[-300:]
            print(f"{line}  wall {wall:.3f}", flush=True)


def exit_cost(repeats: int, gib: float) -> None:
    for _ in range(repeats):
        for mode in ("normal", "fast"):
            proc = subprocess.Popen(
                [PY, "-c", CHILD_EXIT, mode, str(gib)], stdout=subprocess.PIPE, text=True
            )
            assert proc.stdout is not None
            last = float(proc.stdout.readline())
            proc.wait()
            done = time.clock_gettime(time.CLOCK_MONOTONIC)
            print(f"exit {mode:6s} {gib:.1f} GiB: {done - last:.3f} s", flush=True)


def _baseline_evaluator(model: str, windows: int, seq_len: int, device: str) -> Any:
    """An Evaluator with the baseline loaded and measured, its guards not yet signed."""
    from editproof.evalconfig import EvaluationConfig
    from editproof.evaluation import Evaluator

    config = EvaluationConfig(
        baseline=model, n_preview=windows, n_final=windows, seq_len=seq_len, guards=False,
        device=device,
    )  # fmt: skip
    return Evaluator(config)


def guards(model: str, windows: int, seq_len: int, device: str) -> None:
    import torch

    from editproof.guards.chain import default_guards, measure_all

    sync = torch.cuda.synchronize if device != "cpu" else (lambda: None)
    ev = _baseline_evaluator(model, windows, seq_len, device)
    for round_ in range(3):
        for guard in default_guards():
            sync()
            t0 = time.perf_counter()
            measure_all(ev.model.model, ev.guard_ctx, ev.tier.guards, [guard])
            sync()
            print(f"round {round_} {guard.name:10s} {time.perf_counter() - t0:.3f} s", flush=True)
        sync()
        t0 = time.perf_counter()
        measure_all(ev.model.model, ev.guard_ctx, ev.tier.guards)
        sync()
        print(f"round {round_} all        {time.perf_counter() - t0:.3f} s", flush=True)


def guards_gpu(model: str, windows: int, seq_len: int, device: str, dump: str = "") -> None:
    """Each guard's baseline measurement (and all together): the first call's wall, then a
    warm call's wall against the GPU's own kernel time (torch.profiler) and the number of
    kernels. ``dump``: a JSON file for the signatures of all guards (first call)."""
    if not device.startswith("cuda"):
        raise SystemExit("guardsgpu needs a CUDA device (--device cuda)")
    import torch
    from torch.profiler import ProfilerActivity, profile

    from editproof.guards.chain import default_guards, measure_all

    ev = _baseline_evaluator(model, windows, seq_len, device)
    m, ctx, policy = ev.model.model, ev.guard_ctx, ev.tier.guards
    sync = torch.cuda.synchronize
    for guard in [None, *default_guards()]:
        chosen = None if guard is None else [guard]
        sync()
        t0 = time.perf_counter()
        signatures = measure_all(m, ctx, policy, chosen)
        sync()
        first = time.perf_counter() - t0
        if guard is None and dump:
            Path(dump).write_text(
                json.dumps({k: v.model_dump(mode="json") for k, v in signatures.items()})
            )
        t0 = time.perf_counter()
        measure_all(m, ctx, policy, chosen)
        sync()
        wall = time.perf_counter() - t0
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            measure_all(m, ctx, policy, chosen)
            sync()
        events = prof.key_averages()
        gpu = sum(e.self_device_time_total for e in events) / 1e6
        kernels = sum(e.count for e in events if e.self_device_time_total > 0)
        name = "all" if guard is None else guard.name
        print(
            f"{name:10s} first {first:.3f} s  wall {wall:.3f} s  gpu {gpu:.3f} s  "
            f"kernels {kernels}",
            flush=True,
        )


def guards_first(model: str, windows: int, seq_len: int, device: str) -> None:
    """Where the first baseline guard measurement's extra seconds go: after the baseline's
    measurement and cuSOLVER's warm-up (as ``evaluate`` does), the first and a second
    measurement of all guards under torch.profiler, their ops by host time."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from editproof.guards.chain import measure_all, warm_libraries

    ev = _baseline_evaluator(model, windows, seq_len, device)
    warm_libraries(device, ev.model.dtype)
    m, ctx, policy = ev.model.model, ev.guard_ctx, ev.tier.guards
    for call in ("first", "second"):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            measure_all(m, ctx, policy)
            torch.cuda.synchronize()
        print(f"{call}: {time.perf_counter() - t0:.3f} s (profiled)", flush=True)
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=14)
        print(table, flush=True)


def guards_cold(model: str, windows: int, seq_len: int, device: str) -> None:
    """Each guard's first measurement in a fresh process (after the baseline's measurement
    and ``warm_libraries``, as ``evaluate`` runs them), then its second: first-use costs."""
    for name in ("invariants", "spectral", "rmt", "variance", "all"):
        argv = [PY, __file__, "cold1", "--guard", name, "--model", model]
        argv += ["--windows", str(windows), "--seq-len", str(seq_len), "--device", device]
        out = subprocess.run(argv, capture_output=True, text=True, check=False)
        lines = [ln for ln in out.stdout.splitlines() if ln.startswith("cold ")]
        print(*(lines or [f"cold {name}: failed: {out.stderr.strip()[-300:]}"]), flush=True)


def _cold_one(name: str, model: str, windows: int, seq_len: int, device: str) -> None:
    import torch

    from editproof.guards.chain import default_guards, measure_all, warm_libraries

    ev = _baseline_evaluator(model, windows, seq_len, device)
    warm_libraries(device, ev.model.dtype)
    chosen = None if name == "all" else [g for g in default_guards() if g.name == name]
    times = []
    for _ in range(2):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        measure_all(ev.model.model, ev.guard_ctx, ev.tier.guards, chosen)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    print(f"cold {name:10s} first {times[0]:.3f} s  second {times[1]:.3f} s", flush=True)


def edge_routes(device: str) -> None:
    """The RMT guard's two CUDA routes on one module output of 8 windows (bf16, structured
    random activations): seconds per output, batched token space against feature space,
    at T = 512..4096 tokens and d = 4096 / 14336 features; and whether the GEMMs write fp32
    directly (``out_dtype``)."""
    import torch

    import editproof.guards._edge_risk as er

    print(f"out_dtype GEMMs: {er._mixed_precision('cuda')}  torch {torch.__version__}")
    gen = torch.Generator(device=device).manual_seed(0)
    for t in (512, 1024, 2048, 4096):
        for d in (4096, 14336):
            act = torch.randn(8, t, d, device=device, generator=gen, dtype=torch.bfloat16)
            act[:, :, :16] += 4.0  # a few strong features: a direction to find
            mask = torch.ones(8, t, dtype=torch.bool, device=device)
            row = []
            for route in (er.BATCHED_DEVICES, frozenset()):
                er.BATCHED_DEVICES, saved = route, er.BATCHED_DEVICES
                er.BATCHED_MAX_TOKENS, saved_max = 1 << 20, er.BATCHED_MAX_TOKENS
                try:
                    for _rep in range(4):
                        torch.cuda.synchronize()
                        t0 = time.perf_counter()
                        sums = er.EdgeRiskSums(10, 0)
                        for _ in range(4):
                            sums.add("m", act, mask)
                        total, _ = sums.totals()
                        seconds = (time.perf_counter() - t0) / 4
                    row.append((seconds, total["m"]))
                finally:
                    er.BATCHED_DEVICES, er.BATCHED_MAX_TOKENS = saved, saved_max
            (tb, rb), (tf, rf) = row
            print(
                f"T {t:5d} d {d:6d}: token space {tb * 1e3:7.2f} ms  feature space "
                f"{tf * 1e3:7.2f} ms  ratio {tf / tb:5.2f}  risk rel diff {abs(rb - rf) / rf:.1e}",
                flush=True,
            )
            del act


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("parts", nargs="*", default=["importtime", "preload", "exit"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--gib", type=float, default=13.5)
    parser.add_argument("--model", default="")
    parser.add_argument("--windows", type=int, default=64)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dump", default="", help="guardsgpu: write the signatures here")
    parser.add_argument("--guard", default="all", help="cold1: the guard to time")
    args = parser.parse_args()
    for part in args.parts:
        t0 = time.perf_counter()
        if part == "importtime":
            importtime()
        elif part == "preload":
            preload(args.repeats)
        elif part == "exit":
            exit_cost(args.repeats, args.gib)
        elif part == "guards":
            guards(args.model, args.windows, args.seq_len, args.device)
        elif part == "guardscold":
            guards_cold(args.model, args.windows, args.seq_len, args.device)
        elif part == "cold1":
            _cold_one(args.guard, args.model, args.windows, args.seq_len, args.device)
        elif part == "edgeroutes":
            edge_routes(args.device)
        elif part == "guardsfirst":
            guards_first(args.model, args.windows, args.seq_len, args.device)
        elif part == "guardsgpu":
            guards_gpu(args.model, args.windows, args.seq_len, args.device, args.dump)
        print(f"== {part}: {time.perf_counter() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    main()
