"""Whole ``editproof evaluate`` runs on a saved model, timed end to end, with a bare floor.

    python bench/evaluate_e2e.py --model mistral-7b --edit quant_rtn:8:32:attn --windows 64
    python bench/evaluate_e2e.py --model tiny --device cpu --windows 16 --seq-len 128

A random-init model of the named shape and a BPE tokenizer trained on the pydoc text are
saved to a work dir first (not timed). Then one process runs the library's evaluate()
exactly as the CLI does (load, windows, baseline, edit in memory, subject, restore check,
report) and, in the same process afterwards, a bare forward + loss loop over the same
token windows for both arms: the floor any evaluator pays. Prints the ratio.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


_DOC_MODULES = [
    "builtins",
    "os",
    "sys",
    "re",
    "json",
    "typing",
    "collections",
    "itertools",
    "functools",
    "pathlib",
    "subprocess",
    "asyncio",
    "socket",
    "ssl",
    "email",
    "http.client",
    "urllib.request",
    "unittest",
    "logging",
    "argparse",
    "datetime",
    "decimal",
    "statistics",
    "random",
    "math",
    "string",
    "textwrap",
    "inspect",
    "ast",
    "dis",
    "pickle",
    "sqlite3",
    "csv",
    "zipfile",
    "tarfile",
    "shutil",
    "tempfile",
    "threading",
    "multiprocessing",
    "concurrent.futures",
    "queue",
    "enum",
    "dataclasses",
    "contextlib",
    "io",
    "codecs",
    "calendar",
    "time",
    "hashlib",
    "struct",
    "array",
    "copy",
    "pprint",
    "types",
    "weakref",
    "traceback",
    "warnings",
    "importlib",
    "configparser",
    "shlex",
    "glob",
    "platform",
    "signal",
    "selectors",
    "mmap",
    "ctypes",
    "uuid",
    "ipaddress",
    "smtplib",
    "mailbox",
    "mimetypes",
    "html.parser",
    "xml.etree.ElementTree",
    "doctest",
    "pdb",
    "timeit",
    "difflib",
    "unicodedata",
    "operator",
    "numbers",
    "zlib",
    "gzip",
    "tokenize",
    "numpy",
    "torch",
    "torch.nn",
    "torch.nn.functional",
]


_ADDRESS = re.compile(r"\b(?:0x)?[0-9a-f]{9,16}\b")


def write_corpus(path: Path | str, limit: int = 6_000_000) -> Path:
    """Python's docs plus rendered module documentation: enough for 200+200 windows.

    Docstrings are rendered with pydoc (they survive in bytecode-only installs, where the
    ``.py`` sources may be missing). The text is the same in every process on one machine
    with the same library versions: memory addresses are scrubbed and the rendering runs
    under ``PYTHONHASHSEED=0``.
    """
    path = Path(path)
    import os
    import subprocess

    if os.environ.get("PYTHONHASHSEED") != "0":
        # Some modules' docs list sets (``__all__``) in hash order: render under a fixed seed.
        code = f"from evaluate_e2e import write_corpus; write_corpus({str(path)!r}, {limit})"
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), env.get("PYTHONPATH", "")])
        subprocess.run([sys.executable, "-c", code], env=env, check=True)
        return path
    import importlib
    import pydoc
    import pydoc_data.topics

    parts = [v for _, v in sorted(pydoc_data.topics.topics.items())]
    size = sum(len(p) for p in parts)
    for name in _DOC_MODULES:
        if size >= limit:
            break
        try:
            text = pydoc.render_doc(importlib.import_module(name), renderer=pydoc.plaintext)
        except Exception:  # a module missing on this machine only shortens the corpus
            continue
        # Reprs of defaults carry memory addresses, which differ per process: scrub them so
        # the same machine and library versions always give the same text.
        text = _ADDRESS.sub("0x0", text)
        parts.append(text)
        size += len(text)
    path.write_text("\n\n".join(parts), encoding="utf-8")
    return path


def main() -> None:
    import torch

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--edit", default="quant_rtn:8:32:attn")
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--windows", default="64", help="per set: N or PREVIEW:FINAL")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--workdir", default=None)
    p.add_argument("--vocab", type=int, default=24763, help="tokenizer vocab (peer: 24,763)")
    args = p.parse_args()

    from _models import build, train_tokenizer

    from editproof.evaluation import EvaluationConfig, evaluate
    from editproof.lm.loading import resolve_device, resolve_dtype

    device = resolve_device(args.device)
    dtype = resolve_dtype("auto", device)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="editproof-e2e-"))
    model_dir = work / args.model
    t0 = time.perf_counter()
    if not (model_dir / "config.json").exists():
        model, _ = build(args.model, device, dtype)
        model.save_pretrained(str(model_dir), safe_serialization=True)
        train_tokenizer(args.vocab).save_pretrained(str(model_dir))
        del model
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    prep_s = time.perf_counter() - t0
    corpus = write_corpus(work / "corpus.txt")
    n_prev, _, n_fin = args.windows.partition(":")
    config = EvaluationConfig(
        baseline=str(model_dir),
        edit=args.edit,
        provider="text",
        data_path=str(corpus),
        seq_len=args.seq_len,
        n_preview=int(n_prev),
        n_final=int(n_fin or n_prev),
        batch_size=args.batch_size,
        device=device,
        relax_token_floor=True,
    )
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    report = evaluate(config, progress=lambda m: print(f"  · {m}", flush=True))
    total_s = time.perf_counter() - t0
    peak_gpu = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else 0.0

    # Bare floor: both arms' forward + loss over the same windows, model already loaded.
    from _models import build as rebuild

    model, _ = rebuild(args.model, device, dtype)
    from transformers import AutoTokenizer

    from editproof.data import load_corpus, make_windows, tokenize_corpus

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    stream = tokenize_corpus(
        load_corpus("text", path=str(corpus)),
        lambda s: tok.encode(s, add_special_tokens=False),
        separator_id=tok.eos_token_id,
    )
    plan = make_windows(
        stream,
        seq_len=args.seq_len,
        n_preview=config.n_preview,
        n_final=config.n_final,
        seed=config.seed,
    )
    ids = torch.tensor([list(w.tokens) for w in plan.all_windows()], device=device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    with torch.inference_mode():
        for _arm in range(2):
            for i in range(0, len(ids), args.batch_size):
                batch = ids[i : i + args.batch_size]
                logits = model(input_ids=batch, use_cache=False).logits
                torch.nn.functional.cross_entropy(
                    logits[:, :-1].reshape(-1, logits.shape[-1]).float(), batch[:, 1:].reshape(-1)
                )
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    bare_s = time.perf_counter() - t0

    timings = report.provenance.timings
    tokens = 2 * len(ids) * args.seq_len
    name = torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"
    print(f"{args.model} on {name}: {len(ids)} windows x {args.seq_len} per arm, edit {args.edit}")
    print(f"  prepare (untimed: build + save) {prep_s:.1f}s")
    print(f"  corpus sha256 {hashlib.sha256(corpus.read_bytes()).hexdigest()}")
    for key, value in timings.items():
        print(f"  {key:18} {value:8.2f} s")
    print(
        f"  evaluate() wall    {total_s:8.2f} s   status {report.status}, "
        f"ratio {report.primary_metric.ratio}"
    )
    print(f"  bare fwd+loss      {bare_s:8.2f} s   ({tokens / bare_s:,.0f} tok/s, both arms)")
    print(f"  evaluate / bare    {total_s / bare_s:8.2f}x   peak GPU {peak_gpu:.1f} GiB")
    print(
        json.dumps(
            {
                "bench": "evaluate_e2e",
                "model": args.model,
                "device": name,
                "windows_per_arm": len(ids),
                "seq_len": args.seq_len,
                "edit": args.edit,
                "evaluate_s": total_s,
                "bare_s": bare_s,
                "timings": timings,
                "status": report.status,
                "ratio": report.primary_metric.ratio,
                "peak_gpu_gib": peak_gpu,
            }
        )
    )


if __name__ == "__main__":
    main()
