"""What a whole-model sha256 digest beside a measurement costs that measurement, and why.

    python bench/digest_overlap.py --model mistral-7b --windows 128 --seq-len 512

`editproof evaluate` hashes the baseline's weights on a thread while the baseline arm is
measured. On the H200 that arm ran 0.4-0.5 s slower than the subject's at 64+64. This
script measures `measure_nll` over the same windows alone, then with a digest started beside
it in several forms, alternating over --repeats rounds (median reported):

- ``default``: the digest as shipped (64 MiB device-to-host chunks, every core but two);
- ``chunk8``: 8 MiB chunks; ``threads4`` / ``threads2``: fewer hashing threads;
- ``copy-only``: the device-to-host copies without the sha256 (the copy engine alone);
- ``hash-only``: sha256 of a host copy of the weights (the CPUs alone, no GPU traffic).

Token ids are drawn from a fixed seed: the text does not change a forward pass's time.
Prints one table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))


class _NoHash:
    """Stands in for hashlib.sha256 in ``copy-only``: reads nothing, returns a fixed hex."""

    def __init__(self, _data: Any = None) -> None:
        return None

    def update(self, _data: Any) -> None:
        return None

    def hexdigest(self) -> str:
        return "0" * 64


@contextmanager
def _variant(name: str) -> Iterator[None]:
    import editproof.lm.digest as digest

    saved = (digest._CHUNK, digest.hash_threads, digest.hashlib.sha256)
    try:
        if name == "chunk8":
            digest._CHUNK = 8 * 1024 * 1024
        elif name.startswith("threads"):
            n = int(name.removeprefix("threads"))
            digest.hash_threads = lambda: n  # type: ignore[assignment]
        elif name == "copy-only":
            digest.hashlib.sha256 = _NoHash  # type: ignore[assignment,misc]
        yield
    finally:
        digest._CHUNK, digest.hash_threads, digest.hashlib.sha256 = saved  # type: ignore[misc]


def main() -> None:
    import torch
    from _models import build

    from editproof.lm.digest import weight_digest
    from editproof.measure.nll import measure_nll

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="mistral-7b")
    p.add_argument("--windows", type=int, default=128)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--variants", default="default,chunk8,threads4,threads2,copy-only,hash-only")
    p.add_argument("--device", default="cuda")
    args = p.parse_args()
    device = args.device
    model, vocab = build(args.model, device, torch.bfloat16)
    gen = torch.Generator().manual_seed(0)
    windows = torch.randint(0, vocab, (args.windows, args.seq_len), generator=gen).tolist()
    variants = [v for v in args.variants.split(",") if v]
    host: Any = None
    if "hash-only" in variants:
        host = type("Host", (), {})()
        state = {k: v.detach().to("cpu") for k, v in model.state_dict().items()}
        host.state_dict = lambda: state

    def measure() -> float:
        t0 = time.perf_counter()
        measure_nll(model, windows, batch_size=args.batch_size, device=device)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    def beside(target: Any, name: str) -> tuple[float, float]:
        with _variant(name), ThreadPoolExecutor(max_workers=1) as pool:
            t0 = time.perf_counter()
            job = pool.submit(lambda: (weight_digest(target), time.perf_counter() - t0)[1])
            seconds = measure()
            return seconds, job.result()

    measure()  # start-up costs, discarded
    runs: dict[str, list[tuple[float, float]]] = {"alone": [], **{v: [] for v in variants}}
    Run = Callable[[], tuple[float, float]]
    plan: list[tuple[str, Run]] = [("alone", lambda: (measure(), 0.0))]
    for v in variants:
        target = host if v == "hash-only" else model
        plan.append((v, lambda v=v, target=target: beside(target, v)))  # type: ignore[misc]
    for r in range(args.repeats):
        for name, fn in plan if r % 2 == 0 else plan[::-1]:
            runs[name].append(fn())
    gpu = torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu"
    print(f"{gpu}; {args.model}; {args.windows} windows x {args.seq_len}, batch {args.batch_size}")
    alone = statistics.median(s for s, _ in runs["alone"])
    print(f"{'variant':<10} {'measure s':>10} {'vs alone':>9} {'digest s':>9}")
    out: dict[str, Any] = {"bench": "digest_overlap", "device": gpu, "model": args.model}
    for name, got in runs.items():
        m = statistics.median(s for s, _ in got)
        d = statistics.median(x for _, x in got)
        print(f"{name:<10} {m:>10.3f} {m - alone:>+9.3f} {d:>9.3f}")
        out[name] = {"measure_s": m, "digest_s": d, "all": got}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
