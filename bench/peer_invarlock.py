"""InvarLock 0.3.12 and editproof side by side: one edit of one saved model, same text, a floor.

One call of this script, on one machine:

1. builds a random-init model of a real shape (``--model``, see ``_models.SHAPES``) and a
   byte-level BPE tokenizer (vocab 24,763, trained on the pydoc text) and saves them ONCE to
   a work dir (not timed);
2. writes the pydoc/stdlib corpus (``evaluate_e2e.write_corpus``) and, per window count N,
   a JSONL file of 2N records, each record a run of text that tokenizes to at least
   ``--seq-len`` tokens: InvarLock's ``local_jsonl`` provider makes one window of each record
   (truncated to seq_len, so every window is full), editproof's ``jsonl`` provider reads the
   same file (documents joined by EOS, cut into seq_len windows: 2N or a few more candidates);
3. times the floor in this process, with the model still in memory: a bare forward + loss
   (fp32 cross-entropy) over the 2N InvarLock windows of 512, twice (both arms), batch 8,
   after one untimed warm-up batch;
4. per window count, runs each tool as its own process, timed around the subprocess with
   ``time.perf_counter`` (interpreter start and imports included), with the peak host RSS
   of that process (``os.wait4`` in a small launcher process: see :data:`LAUNCHER`) and,
   where ``nvidia-smi`` exists, its sampled peak GPU use:

   - ``python -m invarlock evaluate --baseline M --subject M --edit-config E --preset P
     --profile dev|ci --device D --timing`` (E: quant_rtn 8-bit, attn, max_modules 12, group
     128, clamp 0.005, as InvarLock's ``configs/overlays/edits/quant_rtn/8bit_attn.yaml``;
     P: the ``mistral_7b_512`` preset's eval/guards/auto blocks with a ``local_jsonl``
     dataset; guards invariants, spectral, rmt, variance, invariants; tier balanced);
   - ``python -m editproof evaluate --baseline M --edit quant_rtn:8:32:attn --provider jsonl
     --data FILE --windows N --seq-len 512 --batch-size 8 --device D --relax-token-floor
     --out DIR --quiet`` (the floor relax is recorded in its report; it changes no work).

Then it prints one table (and ``--json PATH`` saves every figure). Own totals: InvarLock's
``TIMING SUMMARY`` ``Total`` (printed by ``--timing``; per arm its ``report.json``
``metrics.timings``), editproof's ``timings.json`` ``total`` (its top keys are printed too).

InvarLock's profiles: ``dev`` applies no overlay (windows come from the preset: N+N);
``ci`` overlays its packaged ``profiles/ci.yaml`` (200+200 windows, 1200 bootstrap
replicates, a guard-overhead check). When a profile's packaged window count differs from N
(small CPU tests), a copy of that profile with N+N windows is given through
``INVARLOCK_CONFIG_ROOT`` and the table says so.

On the GPU machine (Python 3.12, torch 2.11+cu130, transformers 5.17; no network; carry the
git-ignored wheel folders ``.whl`` and ``.whl-peer``)::

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \\
        --target /tmp/site .whl/*.whl .whl-peer/*.whl \\
      && export PYTHONPATH=/tmp/site:$PWD/src \\
      && python3 bench/peer_invarlock.py --model mistral-7b --windows 64,200 \\
           --json /tmp/peer.json

``.whl-peer`` holds invarlock-0.3.12-py3-none-any.whl and the jsonschema it needs:
jsonschema 4.26.0, jsonschema-specifications 2025.9.1, referencing 0.37.0 (py3-none-any) and
rpds-py 2026.9.1 (cp312 manylinux2014_x86_64); attrs, typing_extensions and the rest of
InvarLock's requirements (typer, click, shellingham, pandas, scikit-learn, pydantic, rich,
pyyaml, markdown, psutil, hypothesis) are already there. Fetch them on a networked machine::

    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \\
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \\
        --platform manylinux2014_x86_64 -d .whl-peer jsonschema==4.26.0 \\
        jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1

A small test on a CPU (InvarLock's ``ci`` profile refuses fewer than 180+180 windows in the
balanced tier: its bootstrap coverage floor, E005, reported as PAIRING-SCHEDULE-MISMATCH)::

    python3 bench/peer_invarlock.py --model tiny --device cpu --windows 8,200 --seq-len 64

On an H200 the 7B call should take about 8 minutes (estimated from the earlier H200 side by
side, not measured with this script): build + save (14.5 GB) + corpus about 1 minute, the two
floors about 20 s, InvarLock about 115 + 220 s of process wall, editproof about 25 + 30 s.
That is near a 10-minute per-command cap: if it is cut, run ``--windows 64`` and
``--windows 200`` as two calls (each saves the model again, untimed).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "NO_COLOR": "1",
}

# InvarLock's configs/overlays/edits/quant_rtn/8bit_attn.yaml (the repo's, not in the wheel).
INVARLOCK_EDIT = """\
edit:
  name: quant_rtn
  plan:
    bitwidth: 8
    per_channel: true
    group_size: 128
    clamp_ratio: 0.005
    scope: attn
    max_modules: 12
    seed: 42
"""

# InvarLock's configs/presets/causal_lm/mistral_7b_512.yaml, dataset swapped for local_jsonl.
INVARLOCK_PRESET = """\
dataset:
  provider: local_jsonl
  path: {path}
  text_field: text
  split: validation
  seq_len: {seq_len}
  stride: {seq_len}
  preview_n: {n}
  final_n: {n}
  seed: 42
eval:
  metric:
    kind: ppl_causal
  loss:
    type: causal
auto:
  enabled: true
  tier: balanced
  probes: 0
guards:
  order: [invariants, spectral, rmt, variance, invariants]
output:
  save_model: false
  save_report: true
"""

GIB = 2**30


# --------------------------------------------------------------------------- preparation


def write_records(text: str, tok: Any, seq_len: int, count: int) -> list[str]:
    """``count`` consecutive pieces of ``text``, each re-tokenizing to >= ``seq_len`` tokens."""
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = enc["offset_mapping"]
    records: list[str] = []
    seen: set[str] = set()
    i = 0
    while len(records) < count:
        j = i + seq_len
        while True:
            if j > len(offsets):
                raise SystemExit(
                    f"the corpus gives only {len(records)} records of {seq_len} tokens, "
                    f"{count} needed; lower --windows or --seq-len"
                )
            piece = text[offsets[i][0] : offsets[j - 1][1]]
            if len(tok.encode(piece, add_special_tokens=False)) >= seq_len:
                break
            j += 1  # a piece cut from the stream can re-tokenize shorter: take one more
        i = j
        digest = hashlib.sha256(piece.encode()).hexdigest()
        if piece.strip() and digest not in seen:
            seen.add(digest)
            records.append(piece)
    return records


def prepare(args: argparse.Namespace, device: str, dtype: Any, work: Path) -> tuple[Any, dict]:
    """Build and save the model and tokenizer (once), the corpus and the JSONL files."""
    import torch
    from _models import build, train_tokenizer
    from evaluate_e2e import write_corpus

    model_dir = work / args.model
    t0 = time.perf_counter()
    model, vocab = build(args.model, device, dtype)
    n_params = sum(p.numel() for p in model.parameters())
    tok_vocab = min(args.vocab, vocab)
    tok = train_tokenizer(tok_vocab)
    model.save_pretrained(str(model_dir), safe_serialization=True)
    tok.save_pretrained(str(model_dir))
    # What editproof reads of a tokenizer it has loaded once (its facts cache): as on any
    # second run of this model. A first run also loads the tokenizer itself, and so imports
    # transformers; the `evaluate` part of h200_issue9.sh measures that run.
    from transformers import AutoTokenizer

    from editproof.data.tokenizer_facts import facts_of, store_facts

    store_facts(model_dir, facts_of(AutoTokenizer.from_pretrained(str(model_dir))))
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    save_s = time.perf_counter() - t0
    weights = sum(f.stat().st_size for f in model_dir.glob("*.safetensors"))

    need = 2 * max(args.windows)
    # The records are cut from the start of the corpus, so rendering only what they need
    # (8 chars a token, a 2x margin) gives the same records as the full 6M-char corpus.
    corpus = write_corpus(work / "corpus.txt", limit=need * args.seq_len * 8 + 200_000)
    text = corpus.read_text(encoding="utf-8")
    records = write_records(text, tok, args.seq_len, need)
    files = {}
    for n in sorted(set(args.windows)):
        path = work / f"text-{n}x2.jsonl"
        with path.open("w", encoding="utf-8") as fh:
            for rec in records[: 2 * n]:
                fh.write(json.dumps({"text": rec}) + "\n")
        files[n] = path
    info = {
        "model_dir": str(model_dir),
        "params": n_params,
        "model_vocab": vocab,
        "tokenizer_vocab": len(tok),
        "weights_bytes": weights,
        "build_and_save_s_untimed": save_s,
        "corpus_sha256": hashlib.sha256(corpus.read_bytes()).hexdigest(),
        "corpus_chars": len(text),
        "jsonl": {str(n): str(p) for n, p in files.items()},
        "jsonl_sha256": {
            str(n): hashlib.sha256(p.read_bytes()).hexdigest() for n, p in files.items()
        },
    }
    return (model, tok, records, files), info


def floor_seconds(model: Any, tok: Any, records: list[str], n: int, args: Any, device: str):
    """Bare forward + fp32 loss over InvarLock's 2n windows, both arms, batch ``batch_size``."""
    import torch

    rows = [tok.encode(r, add_special_tokens=False)[: args.seq_len] for r in records[: 2 * n]]
    assert all(len(r) == args.seq_len for r in rows)
    ids = torch.tensor(rows, device=device)

    def step(batch: Any) -> Any:
        logits = model(input_ids=batch, use_cache=False).logits
        return torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]).float(), batch[:, 1:].reshape(-1)
        )

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    with torch.inference_mode():
        step(ids[: args.batch_size]).item()  # warm-up, untimed
        sync()
        t0 = time.perf_counter()
        losses = []
        for _arm in range(2):
            for i in range(0, len(ids), args.batch_size):
                losses.append(step(ids[i : i + args.batch_size]))
        sync()
        seconds = time.perf_counter() - t0
    tokens = 2 * len(ids) * args.seq_len
    mean_loss = float(torch.stack(losses).float().mean())
    return {"seconds": seconds, "tokens": tokens, "tok_per_s": tokens / seconds, "loss": mean_loss}


# --------------------------------------------------------------------------- subprocesses


class GpuSampler:
    """Peak of ``nvidia-smi`` memory.used on one GPU while a child runs, above the level
    seen just before it started (this process keeps a small CUDA context)."""

    def __init__(self, index: str | None) -> None:
        self.index = index
        self.exe = shutil.which("nvidia-smi") if index is not None else None
        self.idle = self.peak = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _read(self) -> float | None:
        try:
            out = subprocess.run(
                [self.exe, f"--id={self.index}", "--query-gpu=memory.used",
                 "--format=csv,noheader,nounits"],
                capture_output=True, text=True, timeout=5, check=True,
            ).stdout  # fmt: skip
            return float(out.strip().splitlines()[0]) * 2**20  # MiB
        except (OSError, ValueError, IndexError, subprocess.SubprocessError):
            return None

    def __enter__(self) -> GpuSampler:
        if self.exe:
            self.idle = self._read()
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(0.25):
            used = self._read()
            if used is not None and (self.peak is None or used > self.peak):
                self.peak = used

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()

    def peak_gib(self) -> float | None:
        if self.peak is None or self.idle is None:
            return None
        return max(0.0, self.peak - self.idle) / GIB


# Runs one command and reports its own peak RSS. On Linux a process's ``ru_maxrss`` also
# carries the high-water mark of the process it was forked from (exec records the old
# address space's peak): children of this script, which holds the whole model in host memory
# while saving it, would all report at least the model's size. A small launcher in between
# gives the measured child a small parent.
LAUNCHER = r"""
import json, os, subprocess, sys, time
cmd, out = json.loads(sys.argv[1]), sys.argv[2]
t0 = time.perf_counter()
proc = subprocess.Popen(cmd)
_, status, usage = os.wait4(proc.pid, 0)
wall = time.perf_counter() - t0
rc = os.waitstatus_to_exitcode(status)
with open(out, "w") as fh:
    json.dump({"wall_s": wall, "rc": rc, "maxrss_kib": usage.ru_maxrss}, fh)
"""


def run_child(cmd: list[str], cwd: Path, env: dict, log: Path, gpu: str | None) -> dict:
    """Run ``cmd`` through :data:`LAUNCHER`: its wall (perf_counter around the process, in
    the launcher), exit code, its own peak RSS, and the sampled peak GPU use."""
    cwd.mkdir(parents=True, exist_ok=True)
    result = log.with_suffix(".rusage.json")
    result.unlink(missing_ok=True)
    with log.open("wb") as fh, GpuSampler(gpu) as sampler:
        subprocess.run(
            [sys.executable, "-c", LAUNCHER, json.dumps(cmd), str(result)],
            cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT, check=False,
        )  # fmt: skip
    measured = json.loads(result.read_text())
    return {
        "cmd": cmd,
        "rc": measured["rc"],
        "wall_s": measured["wall_s"],
        "peak_rss_gib": measured["maxrss_kib"] * 1024 / GIB,  # Linux: KiB
        "peak_gpu_gib": sampler.peak_gib(),
        "log": str(log),
    }


def tail(path: Path, n: int = 40) -> str:
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(lines[-n:])


def invarlock_profile_root(profile: str, n: int, work: Path) -> Path | None:
    """A runtime root whose ``profiles/<profile>.yaml`` asks for n+n windows, when the packaged
    one asks for another count; None when the packaged profile already fits (or is ``dev``)."""
    import yaml

    spec = importlib.util.find_spec("invarlock")
    assert spec is not None and spec.submodule_search_locations
    packaged = Path(next(iter(spec.submodule_search_locations))) / "_data/runtime/profiles"
    src = packaged / f"{profile}.yaml"
    if not src.exists():
        return None  # dev: no overlay, windows come from the preset
    data = yaml.safe_load(src.read_text(encoding="utf-8")) or {}
    ds = data.get("dataset") or {}
    if ds.get("preview_n", n) == n and ds.get("final_n", n) == n:
        return None
    data.setdefault("dataset", {}).update(preview_n=n, final_n=n)
    root = work / f"invarlock-runtime-{profile}-{n}"
    (root / "runtime/profiles").mkdir(parents=True, exist_ok=True)
    (root / "runtime/profiles" / f"{profile}.yaml").write_text(yaml.safe_dump(data), "utf-8")
    return root


_SUMMARY = re.compile(r"^\s*(Baseline|Subject|Evaluation Report|Total)\s*:\s*([0-9.]+)s\s*$")
_STATUS = re.compile(r"^\s*Status\s*:\s*(\S+)")


def run_invarlock(args, device, model_dir, data, n, profile, work, env, gpu) -> dict:
    run = work / f"n{n}-{profile}" / "invarlock"
    run.mkdir(parents=True, exist_ok=True)
    edit = run / "edit_quant_rtn_8bit_attn.yaml"
    edit.write_text(INVARLOCK_EDIT, encoding="utf-8")
    preset = run / "preset_local_jsonl.yaml"
    preset.write_text(INVARLOCK_PRESET.format(path=data, seq_len=args.seq_len, n=n), "utf-8")
    env = dict(env)
    root = invarlock_profile_root(profile, n, work)
    if root is not None:
        env["INVARLOCK_CONFIG_ROOT"] = str(root)
    env["INVARLOCK_EVALUATE_TMP_DIR"] = str(run / "tmp")
    cmd = [sys.executable, "-m", "invarlock", "evaluate",
           "--baseline", str(model_dir), "--subject", str(model_dir),
           "--edit-config", str(edit), "--preset", str(preset),
           "--profile", profile, "--tier", "balanced", "--device", device,
           "--out", str(run / "runs"), "--report-out", str(run / "reports"),
           "--timing", "--no-color", "--no-banner"]  # fmt: skip
    res = run_child(cmd, run, env, run / "invarlock.log", gpu)
    res["profile_override"] = str(root) if root else None
    summary: dict[str, float] = {}
    status = None
    for line in (run / "invarlock.log").read_text(encoding="utf-8", errors="replace").splitlines():
        m = _SUMMARY.match(line)
        if m:
            summary[m.group(1).lower().replace(" ", "_")] = float(m.group(2))
        m = _STATUS.match(line)
        if m:
            status = m.group(1)
    res["timing_summary"] = summary
    res["own_total_s"] = summary.get("total")
    res["status"] = status
    arms = {}
    for arm in ("source", "edited"):
        reports = sorted((run / "runs" / arm).glob("*/report.json"))
        if not reports:
            continue
        rep = json.loads(reports[-1].read_text(encoding="utf-8"))
        met = rep.get("metrics", {})
        arms[arm] = {
            "timings": met.get("timings"),
            "guard_timings": met.get("guard_timings"),
            "tokens": (met.get("preview_total_tokens") or 0) + (met.get("final_total_tokens") or 0),
            "windows": (met.get("window_plan") or {}).get("actual_preview"),
            "params_changed": ((rep.get("edit") or {}).get("deltas") or {}).get("params_changed"),
            "memory_mb_peak": met.get("memory_mb_peak"),
        }
    res["arms"] = arms
    return res


def run_editproof(args, device, model_dir, data, n, profile, work, env, gpu) -> dict:
    run = work / f"n{n}-{profile}" / "editproof"
    out = run / "out"
    cmd = [sys.executable, "-m", "editproof", "evaluate",
           "--baseline", str(model_dir), "--edit", args.edit,
           "--provider", "jsonl", "--data", str(data), "--field", "text",
           "--windows", str(n), "--seq-len", str(args.seq_len),
           "--batch-size", str(args.batch_size), "--device", device,
           "--relax-token-floor", "--out", str(out), "--force", "--quiet"]  # fmt: skip
    res = run_child(cmd, run, env, run / "editproof.log", gpu)
    timings_path = out / "timings.json"
    if timings_path.exists():
        t = json.loads(timings_path.read_text(encoding="utf-8"))
        res["own_total_s"] = t.get("total")
        res["timings"] = t
    else:
        res["own_total_s"] = None
    report = out / "evaluation.report.json"
    if report.exists():
        rep = json.loads(report.read_text(encoding="utf-8"))
        res["status"] = rep.get("status")
        res["report"] = str(report)
    first = (run / "editproof.log").read_text(encoding="utf-8", errors="replace").splitlines()
    res["verdict_line"] = first[0] if first else ""
    return res


# --------------------------------------------------------------------------- output


def versions(device: str) -> dict:
    import torch
    import transformers

    def dist(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    repo = BENCH.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short=7", "HEAD"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        commit += "+dirty" if dirty else ""
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown (no git)"
    name = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else "cpu"
    return {
        "device": name,
        "device_arg": device,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "invarlock": dist("invarlock"),
        "jsonschema": dist("jsonschema"),
        "editproof": dist("editproof") or _source_version(),
        "editproof_commit": commit,
        "cpu_count": os.cpu_count(),
    }


def _source_version() -> str | None:
    """editproof's version when it runs from the source tree (PYTHONPATH), not installed."""
    try:
        import editproof

        return f"{editproof.__version__} (source)"
    except ImportError:
        return None


def fmt(x: float | None, spec: str = ".2f", unit: str = "") -> str:
    return "n/a" if x is None else f"{x:{spec}}{unit}"


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def print_table(meta: dict, results: list[dict]) -> None:
    v, m = meta["versions"], meta["model"]
    print()
    print(
        f"device {v['device']} · Python {v['python']} · torch {v['torch']} · "
        f"transformers {v['transformers']} · invarlock {v['invarlock']} · "
        f"editproof {v['editproof']} at {v['editproof_commit']}"
    )
    print(
        f"model {meta['args']['model']}: {m['params'] / 1e9:.3f} B params, "
        f"{m['weights_bytes'] / 1e9:.2f} GB safetensors, tokenizer vocab {m['tokenizer_vocab']}, "
        f"seq_len {meta['args']['seq_len']}; saved once, untimed "
        f"({m['build_and_save_s_untimed']:.1f} s)"
    )
    print(f"corpus sha256 {m['corpus_sha256'][:16]}… ({m['corpus_chars']:,} chars)")
    print(
        f"InvarLock edit: quant_rtn 8-bit attn, max_modules 12, group 128 · "
        f"editproof edit: {meta['args']['edit']}"
    )
    cols = [f"{r['windows']}+{r['windows']} {r['profile']}" for r in results]
    rows: list[tuple[str, list[str]]] = []

    def row(label: str, values: list[str]) -> None:
        rows.append((label, values))

    row("tokens, both arms (floor)", [f"{r['floor']['tokens']:,}" for r in results])
    row(
        f"floor: bare fwd + loss, both arms, batch {meta['args']['batch_size']}",
        [f"{r['floor']['seconds']:.2f} s ({r['floor']['tok_per_s'] / 1e3:.1f}k tok/s)"
         for r in results],
    )  # fmt: skip
    row(
        "InvarLock total (own timer) / wall",
        [f"{fmt(r['invarlock']['own_total_s'])} s / {r['invarlock']['wall_s']:.2f} s"
         for r in results],
    )  # fmt: skip
    row(
        "editproof total (own timer) / wall",
        [f"{fmt(r['editproof']['own_total_s'])} s / {r['editproof']['wall_s']:.2f} s"
         for r in results],
    )  # fmt: skip
    for label, key in (
        ("InvarLock / floor (wall)", "invarlock_wall_over_floor"),
        ("editproof / floor (wall)", "editproof_wall_over_floor"),
        ("InvarLock / floor (own)", "invarlock_own_over_floor"),
        ("editproof / floor (own)", "editproof_own_over_floor"),
        ("speed-up over InvarLock (wall)", "speedup_wall"),
        ("speed-up over InvarLock (own)", "speedup_own"),
    ):
        row(label, [fmt(r["ratios"][key], ".1f", "x") for r in results])
    row(
        "peak host RSS: InvarLock / editproof",
        [f"{r['invarlock']['peak_rss_gib']:.1f} / {r['editproof']['peak_rss_gib']:.1f} GiB"
         for r in results],
    )  # fmt: skip
    row(
        "peak GPU (nvidia-smi, sampled): IL / ep",
        [f"{fmt(r['invarlock']['peak_gpu_gib'], '.1f')} / "
         f"{fmt(r['editproof']['peak_gpu_gib'], '.1f')} GiB" for r in results],
    )  # fmt: skip
    row(
        "exit code / status: InvarLock",
        [f"{r['invarlock']['rc']} / {r['invarlock'].get('status')}" for r in results],
    )
    row(
        "exit code / status: editproof",
        [f"{r['editproof']['rc']} / {r['editproof'].get('status')}" for r in results],
    )
    row(
        "InvarLock tokens per arm (its report)",
        [" / ".join(f"{a['tokens']:,}" for a in r["invarlock"]["arms"].values()) or "n/a"
         for r in results],
    )  # fmt: skip
    width = max(len(label) for label, _ in rows) + 2
    colw = [max(len(c), *(len(vals[i]) for _, vals in rows)) + 2 for i, c in enumerate(cols)]
    print()
    print(" " * width + "".join(c.rjust(w) for c, w in zip(cols, colw, strict=True)))
    for label, vals in rows:
        print(label.ljust(width) + "".join(x.rjust(w) for x, w in zip(vals, colw, strict=True)))

    for r in results:
        il, ep = r["invarlock"], r["editproof"]
        head = f"{r['windows']}+{r['windows']} {r['profile']}"
        print(f"\n[{head}] InvarLock timing summary: {il['timing_summary'] or 'none printed'}")
        if il.get("profile_override"):
            print(f"  profile '{r['profile']}' given {r['windows']}+{r['windows']} windows "
                  f"through INVARLOCK_CONFIG_ROOT={il['profile_override']}")  # fmt: skip
        for arm, a in il["arms"].items():
            t = a.get("timings") or {}
            g = a.get("guard_timings") or {}
            parts = ", ".join(f"{k} {v:.2f}" for k, v in t.items() if isinstance(v, (int, float)))
            guards = ", ".join(f"{k} {v:.2f}" for k, v in g.items() if isinstance(v, (int, float)))
            print(f"  {arm:6} timers (s): {parts}")
            print(f"  {arm:6} guards (s): {guards}; params changed {a.get('params_changed')}")
        own = il["own_total_s"]
        if own is not None:
            print(f"  process wall outside its Total: {il['wall_s'] - own:.2f} s")
        t = ep.get("timings") or {}
        keys = sorted((t.get("keys") or {}).items(), key=lambda kv: -kv[1])
        top = ", ".join(f"{k} {v:.2f}" for k, v in keys[:10])
        print(f"[{head}] editproof timings.json (s): total {fmt(t.get('total'))}; {top}; "
              f"unattributed {fmt(t.get('unattributed'))}")  # fmt: skip
        if ep.get("verdict_line"):
            print(f"  verdict: {ep['verdict_line']}")


# --------------------------------------------------------------------------- main


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="mistral-7b", help="a shape from _models.SHAPES")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--windows", default="64,200", help="windows per set, one run each: N,N")
    p.add_argument(
        "--profiles",
        default=None,
        help="InvarLock profile per window count [dev for 64, ci for 200, else dev]",
    )
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=8, help="floor and editproof batch")
    p.add_argument("--edit", default="quant_rtn:8:32:attn", help="editproof's edit")
    p.add_argument("--vocab", type=int, default=24763, help="tokenizer vocab (peer: 24,763)")
    p.add_argument("--workdir", default=None, help="keep everything here [a temp dir, removed]")
    p.add_argument("--json", default=None, help="write every figure to this file")
    args = p.parse_args()
    args.windows = [int(x) for x in args.windows.split(",") if x.strip()]
    if args.profiles is None:
        args.profiles = ["ci" if n == 200 else "dev" for n in args.windows]
    else:
        args.profiles = [x.strip() for x in args.profiles.split(",")]
    if len(args.profiles) != len(args.windows):
        p.error("--profiles needs one profile per --windows entry")

    for mod, hint in (
        ("invarlock", "install .whl-peer/*.whl into a --target dir on PYTHONPATH"),
        ("jsonschema", "InvarLock needs it: carry it in .whl-peer"),
        ("editproof", "export PYTHONPATH=$PWD/src"),
    ):
        if importlib.util.find_spec(mod) is None:
            raise SystemExit(f"{mod} is not importable: {hint}")

    import torch

    from editproof.lm.loading import resolve_device, resolve_dtype

    device = resolve_device(args.device)
    dtype = resolve_dtype("auto", device)
    gpu = None
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
        gpu = torch.cuda.current_device()
    keep = args.workdir is not None
    work = Path(args.workdir or tempfile.mkdtemp(prefix="peer-invarlock-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **OFFLINE_ENV}
    child_device, smi_id = device, None
    if gpu is not None:
        # Each child sees only the chosen GPU, as "cuda"; nvidia-smi names it the same way.
        visible = [x for x in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if x]
        smi_id = visible[gpu] if visible else str(gpu)
        env["CUDA_VISIBLE_DEVICES"] = smi_id
        child_device = "cuda"
    meta: dict[str, Any] = {
        "bench": "peer_invarlock",
        "args": {k: v for k, v in vars(args).items()},
        "versions": versions(device),
        "workdir": str(work),
        "env": OFFLINE_ENV,
    }
    print(f"work dir {work}; device {meta['versions']['device']}", flush=True)
    try:
        check = subprocess.run(
            [sys.executable, "-c", "import jsonschema, invarlock.cli.app, editproof.cli"],
            env=env, capture_output=True, text=True,
        )  # fmt: skip
        if check.returncode:  # fail before the (long) model save, not after it
            raise SystemExit(f"the tools do not import in a child process:\n{check.stderr[-2000:]}")
        print(f"building + saving {args.model} (untimed) …", flush=True)
        (model, tok, records, files), meta["model"] = prepare(args, device, dtype, work)
        print(
            f"  {meta['model']['params'] / 1e9:.3f} B params saved in "
            f"{meta['model']['build_and_save_s_untimed']:.1f} s",
            flush=True,
        )
        floors = {}
        for n in sorted(set(args.windows)):
            floors[n] = floor_seconds(model, tok, records, n, args, device)
            print(
                f"  floor {n}+{n}: {floors[n]['seconds']:.2f} s "
                f"({floors[n]['tok_per_s']:,.0f} tok/s, loss {floors[n]['loss']:.3f})",
                flush=True,
            )
        del model
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
        model_dir = Path(meta["model"]["model_dir"])
        results = []
        for n, profile in zip(args.windows, args.profiles, strict=True):
            row: dict[str, Any] = {"windows": n, "profile": profile, "floor": floors[n]}
            for name, fn in (("invarlock", run_invarlock), ("editproof", run_editproof)):
                print(f"running {name} {n}+{n} ({profile}) …", flush=True)
                res = fn(args, child_device, model_dir, files[n], n, profile, work, env, smi_id)
                print(
                    f"  wall {res['wall_s']:.2f} s, own {fmt(res['own_total_s'])} s, "
                    f"rc {res['rc']}, peak RSS {res['peak_rss_gib']:.1f} GiB",
                    flush=True,
                )
                if res["own_total_s"] is None:
                    print(f"  {name} gave no timing; last lines of {res['log']}:", flush=True)
                    print(tail(Path(res["log"])), flush=True)
                row[name] = res
            fl = floors[n]["seconds"]
            il, ep = row["invarlock"], row["editproof"]
            row["ratios"] = {
                "invarlock_wall_over_floor": ratio(il["wall_s"], fl),
                "editproof_wall_over_floor": ratio(ep["wall_s"], fl),
                "invarlock_own_over_floor": ratio(il["own_total_s"], fl),
                "editproof_own_over_floor": ratio(ep["own_total_s"], fl),
                "speedup_wall": ratio(il["wall_s"], ep["wall_s"]),
                "speedup_own": ratio(il["own_total_s"], ep["own_total_s"]),
            }
            results.append(row)
        meta["results"] = results
        print_table(meta, results)
        if args.json:
            Path(args.json).write_text(json.dumps(meta, indent=2, default=str) + "\n", "utf-8")
            print(f"\nfigures: {args.json}")
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
