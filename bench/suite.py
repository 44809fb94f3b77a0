"""Suite makespan on one model, against a bare forward+loss floor measured in the same run.

    python bench/suite.py --model mistral-7b --workdir /tmp/ep --out /tmp/ep/run   # GPU
    python bench/suite.py --model demo                                              # CPU demo
    python bench/suite.py --model mistral-7b --executor local,ray   # Ray vs local, one host

Builds (once) a random-init model of the named shape with a tokenizer trained on the stdlib's
pydoc text, measures the bare floor (batch 8 x seq, forward + loss, bf16 on CUDA), then runs
`editproof suite --suite subset --models <dir>` (every subset scenario, default run counts,
unless extra suite arguments follow `--`) as a subprocess and prints where the time went.
The verdict of a random model is meaningless; its time is not. `--executor local,ray` runs
the same suite once per executor (Ray: a local cluster unless `--ray-address`) and prints
each makespan, the ratio to the first, and whether every per-window number is the same.
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

    def run() -> None:
        with torch.inference_mode():
            for i in range(0, len(ids), batch):
                x = ids[i : i + batch]
                logits = model(x).logits[:, :-1].float()
                torch.nn.functional.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1)
                )
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    run()  # warm-up
    t0 = time.perf_counter()
    run()
    rate = ids.numel() / (time.perf_counter() - t0)
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
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--windows", type=int, default=64)
    p.add_argument("--executor", default="local", help="local, ray, or local,ray to compare")
    p.add_argument("--ray-address", default=None)
    p.add_argument("extra", nargs="*", help="extra `editproof suite` arguments (after --)")
    args = p.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    source = _save_model(args.model, work, args.device)
    build_s = time.perf_counter() - t0
    rate = _floor(source, args.device, args.seq_len, 8, args.windows)
    base = Path(args.out or work / f"run-{int(time.time())}")
    executors = [e.strip() for e in args.executor.split(",") if e.strip()]
    walls: dict[str, float] = {}
    numbers: dict[str, Any] = {}
    for executor in executors:
        out = base if len(executors) == 1 else base.with_name(f"{base.name}-{executor}")
        cmd = [sys.executable, "-m", "editproof", "suite", "--device", args.device,
               "--out", str(out), "--executor", executor]  # fmt: skip
        if executor == "ray" and args.ray_address:
            cmd += ["--ray-address", args.ray_address]
        if source != "demo":
            cmd += ["--suite", "subset", "--models", source, "--seq-len", str(args.seq_len),
                    "--windows", str(args.windows)]  # fmt: skip
        cmd += args.extra
        walls[executor] = _report(args, executor, cmd, out, rate, build_s)
        numbers[executor] = _numbers(out)
    if len(executors) > 1:
        first = executors[0]
        for executor in executors[1:]:
            print(
                f"executor {executor} vs {first}: {walls[executor]:.1f}s / {walls[first]:.1f}s "
                f"= {walls[executor] / walls[first]:.3f}x; same per-window numbers: "
                f"{numbers[executor] == numbers[first]}"
            )


def _numbers(run: Path) -> dict[str, Any]:
    out = {}
    for path in sorted(run.rglob("evaluation.report.json")):
        r = json.loads(path.read_text())
        out[str(path.relative_to(run))] = r["subject"]["final"]["mean_nll"]
    return out


def _report(
    args: argparse.Namespace, executor: str, cmd: list[str], out: Path, rate: float, build_s: float
) -> float:
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
    slow = sorted(timings["tasks"].items(), key=lambda kv: -kv[1])[:8]
    print("slowest tasks:", json.dumps(dict(slow)))
    print(json.dumps({"bench": "suite", "model": args.model, "device": args.device,
                      "executor": executor, "wall_s": wall, "floor_s": floor, "tokens": tokens,
                      "reports": reports, "bare_tok_s": rate, "timings": timings}))  # fmt: skip
    return wall


if __name__ == "__main__":
    main()
