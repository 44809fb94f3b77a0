"""Tokens/s of editproof's evaluation loop vs a bare ``model(input_ids)`` loop, same run.

    python bench/eval_throughput.py --model demo --device cpu --seq-len 256 --windows 16
    python bench/eval_throughput.py --model mistral-7b --device cuda --seq-len 512 --windows 128

Both loops see the same windows and batch size; they alternate over --repeats rounds and the
median of each is reported. "bare+loss" adds the fp32 cross-entropy a real evaluation needs
(what the peer's "bare forward + loss" figure measured). Prints one JSON line at the end.

On a GPU it also times a bf16 matmul (8192 x 8192, the card's practical dense peak, in the
same process) and reports each loop's TFLOP/s (2 x parameters x tokens/s, the usual count
that leaves attention out) against it. ``--batch-size 8,16,32`` runs each size in turn.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bare(model: Any, batches: list[Any], device: str, loss: bool) -> float:
    import torch

    _sync(device)
    start = time.perf_counter()
    with torch.inference_mode():
        for ids in batches:
            logits = model(input_ids=ids, use_cache=False).logits
            if loss:
                torch.nn.functional.cross_entropy(
                    logits[:, :-1].reshape(-1, logits.shape[-1]).float(), ids[:, 1:].reshape(-1)
                )
    _sync(device)
    return time.perf_counter() - start


def ours(model: Any, windows: list[list[int]], device: str, batch: int) -> tuple[float, Any]:
    from editproof.measure import measure_nll

    result = measure_nll(model, windows, batch_size=batch, device=device)
    return result.telemetry.seconds, result


def main() -> None:
    import torch

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny", help="demo, tiny, llama-1b or mistral-7b")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--windows", type=int, default=128)
    p.add_argument("--batch-size", default="8", help="one size or several: 8,16,32")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()

    from _models import build

    from editproof.lm.loading import resolve_device, resolve_dtype

    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    t0 = time.perf_counter()
    model, vocab = build(args.model, device, dtype)
    build_s = time.perf_counter() - t0
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (args.windows, args.seq_len), generator=gen)
    peak_tflops = _matmul_peak(device) if device.startswith("cuda") else None
    for size in [int(s) for s in args.batch_size.split(",")]:
        _one_size(args, model, ids, size, device, dtype, build_s, peak_tflops)
        if device.startswith("cuda"):
            torch.cuda.empty_cache()


def _matmul_peak(device: str) -> float:
    """bf16 TFLOP/s of a large square matmul: the practical ceiling on this card."""
    import torch

    n = 8192
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    _sync(device)
    reps = 20
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e12


def _one_size(
    args: Any,
    model: Any,
    ids: Any,
    batch_size: int,
    device: str,
    dtype: Any,
    build_s: float,
    peak_tflops: float | None,
) -> None:
    import torch

    args.batch_size = batch_size
    windows = ids.tolist()
    batches = [ids[i : i + args.batch_size].to(device) for i in range(0, len(ids), args.batch_size)]
    bare(model, batches[:1], device, loss=False)  # warm-up: kernels, allocator
    ours(model, windows[: args.batch_size], device, args.batch_size)

    times: dict[str, list[float]] = {"ours": [], "bare": [], "bare+loss": []}
    for _ in range(args.repeats):
        times["bare"].append(bare(model, batches, device, loss=False))
        times["bare+loss"].append(bare(model, batches, device, loss=True))
        seconds, result = ours(model, windows, device, args.batch_size)
        times["ours"].append(seconds)
    tokens = args.windows * args.seq_len
    med = {k: statistics.median(v) for k, v in times.items()}
    rate = {k: tokens / v for k, v in med.items()}
    peak = result.telemetry.peak_memory_bytes / 2**30
    n_params = sum(p.numel() for p in model.parameters())
    name = torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"
    print(
        f"model {args.model} ({n_params / 1e9:.2f}B params, {dtype}) on {name}; "
        f"built in {build_s:.1f}s"
    )
    print(
        f"{args.windows} windows x {args.seq_len} tokens, batch {args.batch_size}, "
        f"median of {args.repeats}"
    )
    for key in ("bare", "bare+loss", "ours"):
        print(f"  {key:10} {med[key]:8.3f} s  {rate[key]:12,.0f} tok/s")
    print(f"  ratio ours/bare      {rate['ours'] / rate['bare']:.3f}")
    print(f"  ratio ours/bare+loss {rate['ours'] / rate['bare+loss']:.3f}")
    print(f"  peak memory ({result.telemetry.peak_memory_kind}) {peak:.2f} GiB")
    tflops = {k: 2 * n_params * v / 1e12 for k, v in rate.items()}
    if peak_tflops:
        print(f"  bf16 matmul peak, same process: {peak_tflops:.0f} TFLOP/s")
        for key in ("bare", "bare+loss", "ours"):
            print(f"  {key:10} {tflops[key]:6.0f} TFLOP/s = {tflops[key] / peak_tflops:.1%} of it")
    print(
        json.dumps(
            {
                "bench": "eval_throughput",
                "model": args.model,
                "device": name,
                "dtype": str(dtype),
                "params": n_params,
                "seq_len": args.seq_len,
                "windows": args.windows,
                "batch_size": args.batch_size,
                "seconds": med,
                "tokens_per_s": rate,
                "ratio_vs_bare": rate["ours"] / rate["bare"],
                "ratio_vs_bare_loss": rate["ours"] / rate["bare+loss"],
                "peak_gib": peak,
                "tflops": tflops,
                "matmul_peak_tflops": peak_tflops,
            }
        )
    )


if __name__ == "__main__":
    main()
