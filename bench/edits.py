"""Apply + restore each edit in memory vs save + reload a full copy of the model.

    python bench/edits.py --model mistral-7b --device cuda
    python bench/edits.py --model tiny --device cpu

The system that inspired editproof wrote a full edited copy of the model to disk for every
edit and loaded it back; editproof edits the loaded baseline in place and restores only the
touched tensors. Both are timed here in one process on one model. Restore is checked
against the baseline's weight digest every time (its cost is reported separately).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

SPECS = (
    "noop",
    "quant_rtn:8:32:all",
    "quant_rtn:4:32:ffn",
    "fp8_quant:e5m2:ffn",
    "magnitude_prune:0.12:ffn",
    "magnitude_prune:0.5:all",
    "lowrank_svd:32:ffn@layer=last",
    "lowrank_svd:32:all",
    "nan_injection",
    "scale_explosion",
    "rank_collapse",
    "norm_collapse",
    "extreme_quant",
    "shape_mismatch",
    "missing_tensors",
    "weight_tying_break",
    "rmt_norm_noise",
    "spectral_moderate_scale",
    "ve_mlp_scale_skew",
)


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_edit(
    model: Any, spec: str, device: str, baseline_sha: str, baseline_fp: dict[str, Any]
) -> dict[str, Any]:
    from editproof.edits import apply_edit
    from editproof.lm import weight_digest
    from editproof.lm.digest import fingerprints

    _sync(device)
    t0 = time.perf_counter()
    handle = apply_edit(model, spec)
    _sync(device)
    t1 = time.perf_counter()
    handle.restore()
    _sync(device)
    t2 = time.perf_counter()
    same_fp = fingerprints(model) == baseline_fp
    _sync(device)
    t3 = time.perf_counter()
    digest = weight_digest(model).sha256
    t4 = time.perf_counter()
    if digest != baseline_sha or not same_fp:
        raise SystemExit(f"restore of {spec} did not give back the baseline weights")
    return {
        "spec": spec,
        "apply_s": t1 - t0,
        "restore_s": t2 - t1,
        "fingerprint_s": t3 - t2,
        "verify_s": t4 - t3,
        "tensors": len(handle.record.tensors),
        "rel_error": handle.record.rel_error,
    }


def save_reload(model: Any, device: str, dtype: Any, workdir: Path) -> dict[str, float]:
    """What a disk-based pipeline pays per edit: write the full copy, load it back."""
    from transformers import AutoModelForCausalLM

    target = workdir / "edited-copy"
    _sync(device)
    t0 = time.perf_counter()
    model.save_pretrained(str(target), safe_serialization=True)
    t1 = time.perf_counter()
    kwargs: dict[str, Any] = {"dtype": dtype}
    if device.startswith("cuda"):
        kwargs["device_map"] = device
    reloaded = AutoModelForCausalLM.from_pretrained(str(target), **kwargs)
    _sync(device)
    t2 = time.perf_counter()
    size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    del reloaded
    shutil.rmtree(target)
    return {"save_s": t1 - t0, "reload_s": t2 - t1, "bytes": float(size)}


def main() -> None:
    import torch

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny", help="demo, tiny, llama-1b or mistral-7b")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--workdir", default=None, help="Where the save/reload copy goes [tmp].")
    p.add_argument("--specs", default=",".join(SPECS))
    args = p.parse_args()

    from _models import build

    from editproof.lm import weight_digest
    from editproof.lm.digest import fingerprints
    from editproof.lm.loading import resolve_device, resolve_dtype

    device = resolve_device(args.device)
    dtype = resolve_dtype("auto", device)
    model, _ = build(args.model, device, dtype)
    t0 = time.perf_counter()
    baseline_sha = weight_digest(model).sha256
    digest_s = time.perf_counter() - t0
    baseline_fp = fingerprints(model)
    n_params = sum(p.numel() for p in model.parameters())
    name = torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"
    print(
        f"model {args.model} ({n_params / 1e9:.2f}B, {dtype}) on {name}; "
        f"full weight digest {digest_s:.2f}s"
    )
    rows = [
        time_edit(model, spec, device, baseline_sha, baseline_fp) for spec in args.specs.split(",")
    ]
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="editproof-bench-"))
    disk = save_reload(model, device, dtype, workdir)
    per_edit_disk = disk["save_s"] + disk["reload_s"]
    print(
        f"save + reload a full copy: {disk['save_s']:.2f}s + {disk['reload_s']:.2f}s "
        f"({disk['bytes'] / 1e9:.2f} GB)"
    )
    print(f"{'edit':34} {'apply':>8} {'restore':>8} {'fp-check':>8} {'sha256':>8} {'vs disk':>9}")
    for row in rows:
        mem = row["apply_s"] + row["restore_s"]
        row["disk_over_memory"] = per_edit_disk / mem if mem > 0 else float("inf")
        print(
            f"{row['spec']:34} {row['apply_s']:8.3f} {row['restore_s']:8.3f} "
            f"{row['fingerprint_s']:8.3f} {row['verify_s']:8.3f} {row['disk_over_memory']:8.1f}x"
        )
    print(
        json.dumps(
            {
                "bench": "edits",
                "model": args.model,
                "device": name,
                "params": n_params,
                "digest_s": digest_s,
                "disk": disk,
                "edits": rows,
            }
        )
    )


if __name__ == "__main__":
    main()
