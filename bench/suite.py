"""Suite makespan on one model, against a bare forward+loss floor measured in the same run.

    python bench/suite.py --model mistral-7b --workdir /tmp/ep --out /tmp/ep/run   # GPU
    python bench/suite.py --model demo                                              # CPU demo
    python bench/suite.py --model mistral-7b --executor local,ray   # Ray vs local, one host

Builds (once) a random-init model of the named shape with a tokenizer trained on the stdlib's
pydoc text, measures the bare floor (batch 8 x seq, forward + loss, bf16 on CUDA), then runs
`editproof suite --suite subset --models <dir>` (every subset scenario, default run counts,
unless extra suite arguments follow `--`) as a subprocess and prints where the time went.
The verdict of a random model is meaningless; its time is not. `--executor local,ray,ray,local`
runs the same suite once per entry, in that order (Ray: a local cluster unless
`--ray-address`), and prints a table of the runs (wall, time outside the workers, worker
start, imports, setup, mean task), the ratio of each executor's mean to the first's (raw,
without the time outside the workers, per task), and whether the verdict and every ratio, CI,
guard and mean NLL match the first run's. `--json FILE` writes every run's summary.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _save_model(name: str, work: Path, device: str) -> str:
    if name == "demo":
        return "demo"
    import torch
    from _models import build, train_tokenizer

    target = work / name
    if not (target / "config.json").exists():
        model, vocab = build(
            name, device, torch.bfloat16 if device.startswith("cuda") else torch.float32
        )
        model.save_pretrained(str(target), safe_serialization=True)
        train_tokenizer(min(24763, vocab)).save_pretrained(str(target))  # ids < the shape's vocab
        del model
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return str(target)


def _floor(source: str, device: str, seq_len: int, batch: int, n_windows: int) -> float:
    """Bare tokens/s: forward + mean CE over real windows of the suite's text."""
    import torch
    from _floor import bare_pass

    from editproof.data import load_corpus, make_windows, tokenize_corpus
    from editproof.lm import load_model, parse_source

    lm = load_model(parse_source(source), device=device)
    tok = lm.tokenizer
    stream = tokenize_corpus(
        load_corpus("pydoc"),
        lambda s: list(tok.encode(s, add_special_tokens=False)),
        separator_id=tok.eos_token_id,
    )
    plan = make_windows(stream, seq_len=seq_len, n_preview=n_windows, n_final=n_windows, seed=42)
    ids = torch.tensor([list(w.tokens) for w in plan.all_windows()], device=lm.device)
    model = lm.model
    bare_pass(model, ids, batch, device)  # warm-up
    rate = ids.numel() / bare_pass(model, ids, batch, device)
    lm.model = None
    model = None
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return rate


def _tokens(run_dir: Path) -> tuple[int, int]:
    """(tokens the suite measured for perplexity, number of reports)."""
    total, n = 0, 0
    for path in run_dir.rglob("evaluation.report.json"):
        r = json.loads(path.read_text())
        total += r["subject"]["telemetry"]["tokens"]
        n += 1
    base = next(run_dir.rglob("baseline.json"), None)
    if base is not None:
        b = json.loads(base.read_text())
        total += sum(b["preview"]["token_counts"]) + sum(b["final"]["token_counts"])
    return total, n


def main() -> None:
    import torch

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="mistral-7b")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--workdir", default="/tmp/editproof-bench-suite")
    p.add_argument("--out", default=None)
    p.add_argument("--seq-len", type=int, default=None, help="512; demo 128 (the demo's own)")
    p.add_argument("--windows", type=int, default=None, help="64; demo 16")
    p.add_argument(
        "--executor", default="local", help="local, ray, or runs in turn: local,ray,ray,local"
    )
    p.add_argument("--json", dest="json_out", default=None, help="write every run's summary")
    p.add_argument("--ray-address", default=None)
    p.add_argument("extra", nargs="*", help="extra `editproof suite` arguments (after --)")
    args = p.parse_args()
    demo = args.model == "demo"
    args.seq_len = args.seq_len or (128 if demo else 512)
    args.windows = args.windows or (16 if demo else 64)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    source = _save_model(args.model, work, args.device)
    build_s = time.perf_counter() - t0
    rate = _floor(source, args.device, args.seq_len, 8, args.windows)
    base = Path(args.out or work / f"run-{int(time.time())}")
    executors = [e.strip() for e in args.executor.split(",") if e.strip()]
    runs: list[dict[str, Any]] = []
    for i, executor in enumerate(executors, 1):
        out = base if len(executors) == 1 else base.with_name(f"{base.name}-{i}-{executor}")
        cmd = [sys.executable, "-m", "editproof", "suite", "--device", args.device,
               "--out", str(out), "--executor", executor]  # fmt: skip
        if executor == "ray" and args.ray_address:
            cmd += ["--ray-address", args.ray_address]
        if source != "demo":
            cmd += ["--suite", "subset", "--models", source, "--seq-len", str(args.seq_len),
                    "--windows", str(args.windows)]  # fmt: skip
        cmd += args.extra
        run = _report(args, executor, cmd, out, rate, build_s)
        run["numbers"] = _numbers(out)
        runs.append(run)
    if len(executors) > 1:
        _compare(runs)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(runs, indent=1) + "\n")


def _compare(runs: list[dict[str, Any]]) -> None:
    """Per-run table, mean wall per executor and ratios to the first, and whether every
    verdict and number matches the first run's."""
    keys = ("wall_s", "outside_s", "process_start", "imports", "setup_s", "task_mean_s")
    print("run executor " + " ".join(f"{k:>13}" for k in keys) + "  same numbers")
    for i, r in enumerate(runs, 1):
        same = r["numbers"] == runs[0]["numbers"]
        cells = " ".join(f"{r[k]:13.2f}" if r[k] is not None else f"{'-':>13}" for k in keys)
        print(f"{i:3d} {r['executor']:>8} {cells}  {same}")
    by: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        by.setdefault(r["executor"], []).append(r)
    first = runs[0]["executor"]

    def mean(ex: str, key: str) -> float:
        return sum(r[key] for r in by[ex]) / len(by[ex])

    for ex in by:
        if ex == first:
            continue
        wall = mean(ex, "wall_s") / mean(first, "wall_s")
        inner = (mean(ex, "wall_s") - mean(ex, "outside_s")) / (
            mean(first, "wall_s") - mean(first, "outside_s")
        )
        task = mean(ex, "task_mean_s") / mean(first, "task_mean_s")
        print(f"{ex}/{first}: wall {wall:.3f}x (means of {len(by[ex])} and {len(by[first])} "
              f"runs); excluding the time outside the workers (Ray: init + shutdown) "
              f"{inner:.3f}x; per task {task:.3f}x")  # fmt: skip
    same = all(r["numbers"] == runs[0]["numbers"] for r in runs)
    print(f"verdict, ratios, CIs, guards and mean NLLs identical across all runs: {same}")


def _numbers(run: Path) -> dict[str, Any]:
    """Everything a run decides on: the verdict, and per report the subject and baseline
    mean NLL, the primary ratio with its CI, every guard and the status."""
    out: dict[str, Any] = {}
    for path in sorted(run.rglob("evaluation.report.json")):
        r = json.loads(path.read_text())
        out[str(path.relative_to(run))] = [
            r["subject"]["final"]["mean_nll"], r["baseline"]["final"]["mean_nll"],
            r["primary_metric"], _untimed(r.get("guards")), r["status"],
        ]  # fmt: skip
    base = next(run.rglob("baseline.json"), None)
    if base is not None:
        b = json.loads(base.read_text())
        out["baseline"] = [b["preview"]["mean_nll"], b["final"]["mean_nll"]]
    verdict = run / "reports" / "final_verdict.json"
    if verdict.is_file():
        v = json.loads(verdict.read_text())
        out["verdict"] = [v["verdict"], sorted(f["requirement"] for f in v["failed_requirements"])]
    return out


def _untimed(x: Any) -> Any:
    """``x`` without its ``seconds`` entries (a guard's run time is not a result)."""
    if isinstance(x, dict):
        return {k: _untimed(v) for k, v in x.items() if k != "seconds"}
    return [_untimed(v) for v in x] if isinstance(x, list) else x


def _report(
    args: argparse.Namespace, executor: str, cmd: list[str], out: Path, rate: float, build_s: float
) -> dict[str, Any]:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
    wall = time.perf_counter() - t0
    timings: dict[str, Any] = json.loads((out / "state" / "timings.json").read_text())
    tokens, reports = _tokens(out)
    floor = tokens / rate
    print(f"[{executor}] {res.stdout.strip()}")
    if res.returncode not in (0, 1):
        print(res.stderr[-3000:])
    print(f"model {args.model} on {args.device}: built/saved in {build_s:.1f}s")
    print(f"suite wall {wall:.1f}s ({executor} executor), {reports} reports, {tokens} tokens")
    print(
        f"bare floor {rate:,.0f} tok/s -> {floor:.1f}s for those tokens; "
        f"suite/floor {wall / floor:.2f}x"
    )
    print("seconds by task type:", json.dumps(timings["tasks_by_type"]))
    print("driver:", json.dumps(timings["driver"]))
    workers = timings.get("workers", {})
    for name, w in workers.items():  # logs/workers/<id>.timings.json
        print(f"worker {name}:", json.dumps(w))
    slow = sorted(timings["tasks"].items(), key=lambda kv: -kv[1])[:8]
    print("slowest tasks:", json.dumps(dict(slow)))

    def total(key: str) -> float | None:
        vals = [w[key] for w in workers.values() if w.get(key) is not None]
        return sum(vals) if vals else None

    setup = [s for t, s in timings["tasks"].items() if t.startswith("setup")]
    rest = [s for t, s in timings["tasks"].items() if not t.startswith(("setup", "preset"))]
    # With one worker at a time (one model, or one CPU slot) the executor's time outside any
    # worker's lifetime: Ray's init and shutdown, local's spawn and polling.
    outside = timings["driver"]["execute"] - (total("total") or 0.0)
    summary = {"bench": "suite", "model": args.model, "device": args.device,
               "executor": executor, "returncode": res.returncode, "wall_s": wall,
               "outside_s": outside, "process_start": total("process_start"),
               "imports": total("imports"), "setup_s": sum(setup),
               "task_mean_s": sum(rest) / max(len(rest), 1), "floor_s": floor, "tokens": tokens,
               "reports": reports, "bare_tok_s": rate, "timings": timings}  # fmt: skip
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
