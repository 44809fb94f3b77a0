"""Guard cost and detection: every edit/fault judged on one baseline, guards timed.

    python bench/guards.py --model demo --device cpu              # default windows (64+64 x 256)
    python bench/guards.py --model mistral-7b --device cuda --specs noop,quant_rtn:8:32:attn
For each spec: the primary metric, each guard's status, and each guard's time as a fraction
of the evaluation's own measurement time (the subject's forward passes). The null check
(noop re-measured under other seeds and window samples) is `editproof calibrate null-sweep`.

Then, per scenario (``judge_edit`` with the baseline reused, as inside a suite): wall time,
where it went (edit apply, subject measurement, guards, restore check, the rest) and its
ratio to the subject-arm floor, a bare forward + loss over the same windows at the same
batch size, timed in the same process after the specs (``--no-floor`` skips it).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

FAULTS = (
    "nan_injection,inf_injection,shape_mismatch,missing_tensors,extreme_quant,scale_explosion,"
    "rank_collapse,norm_collapse,weight_tying_break,rmt_norm_noise,spectral_moderate_scale,"
    "ve_mlp_scale_skew"
)
DEFAULT_SPECS = "noop,quant_rtn:8:32:all,quant_rtn:clean:ffn,magnitude_prune:0.5:all," + FAULTS


def _baseline(model: str, device: str, work: Path) -> str:
    if model == "demo" or model.startswith("random:"):
        return model  # the embedded model, or a shape drawn on the device (no disk)
    import torch
    from _models import build, train_tokenizer

    from editproof.lm.loading import resolve_dtype

    target = work / model
    if not (target / "config.json").exists():
        built, _ = build(model, device, resolve_dtype("auto", device))
        built.save_pretrained(str(target), safe_serialization=True)
        train_tokenizer(24763).save_pretrained(str(target))
        del built
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return str(target)


def _row(spec: str, report: Any) -> dict[str, Any]:
    timings = report.provenance.timings
    measure = timings.get("measure_subject", float("nan"))
    guards = {
        g.name: {
            "status": g.status,
            "seconds": g.seconds,
            "fraction": g.seconds / measure,
            "violations": g.violations[:2],
        }
        for g in report.guards.results
    }
    return {
        "spec": spec,
        "status": report.status,
        "ratio": report.primary_metric.ratio,
        "invalid": report.primary_metric.invalid,
        "measure_s": measure,
        "guards": guards,
        "timings": {k: v for k, v in timings.items() if k != "total"},
    }


def main() -> None:
    import torch

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="demo", help="demo, a shape name, or random:<dir>")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--specs", default=DEFAULT_SPECS)
    p.add_argument("--windows", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=None)
    p.add_argument("--batch-size", default="8", help="a number, or auto")
    p.add_argument("--workdir", default=None)
    p.add_argument("--provider", default="auto")
    p.add_argument("--no-floor", action="store_true")
    p.add_argument("--json", help="write every figure here")
    args = p.parse_args()

    from editproof.evaluation import EvaluationConfig, Evaluator
    from editproof.lm.loading import resolve_device

    device = resolve_device(args.device)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="editproof-guards-"))
    base = _baseline(args.model, device, work)

    def config(seed: int) -> EvaluationConfig:
        return EvaluationConfig(
            baseline=base,
            edit="noop",
            seq_len=args.seq_len,
            n_preview=args.windows,
            n_final=args.windows,
            batch_size=None if args.batch_size == "auto" else int(args.batch_size),
            device=device,
            seed=seed,
            relax_token_floor=True,
            provider=args.provider,
        )

    rows = []
    if args.specs:
        ev = Evaluator(config(42))
        t = ev.timings
        base_fraction = t.get("guards_baseline", 0.0) / t["measure_baseline"]
        print(
            f"{args.model} on {device}: {len(ev.windows)} windows x {ev.plan.seq_len}; "
            f"baseline guards {t.get('guards_baseline', 0):.2f}s = {base_fraction:.1%} of its "
            f"measurement ({t['measure_baseline']:.2f}s)"
        )
        names = ("invariants", "spectral", "rmt", "variance")
        print(f"{'spec':28} {'status':6} {'ratio':>9}  " + "  ".join(f"{n:>16}" for n in names))
        for spec in args.specs.split(","):
            started = time.perf_counter()
            report = ev.judge_edit(spec)
            row = _row(spec, report)
            row["wall_s"] = time.perf_counter() - started
            rows.append(row)
            ratio = "invalid" if row["invalid"] else f"{row['ratio']:.4f}"
            cells = [
                f"{row['guards'][n]['status']:>5} {row['guards'][n]['fraction']:6.1%}"
                for n in names
                if n in row["guards"]
            ]
            print(
                f"{spec:28} {row['status']:6} {ratio:>9}  " + "  ".join(f"{c:>16}" for c in cells)
            )
    floor = None
    if rows and not args.no_floor:
        floor = _floor(ev, ev.batch_size)  # the batch the evaluator measured with
        _per_scenario(rows, floor)
    figures = {
        "bench": "guards",
        "model": args.model,
        "device": device,
        "gpu": torch.cuda.get_device_name(0) if device.startswith("cuda") else None,
        "windows": args.windows,
        "batch_size": ev.batch_size if args.specs else args.batch_size,
        "subject_floor_s": floor,
        "baseline_timings": ev.timings if args.specs else None,
        "rows": rows,
    }
    print(json.dumps(figures, default=str))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str) + "\n")


def _floor(ev: Any, batch: int) -> float:
    """One arm's bare forward + mean CE over the evaluator's own windows (after a warm-up
    pass), on the loaded baseline: what any evaluator pays for the subject's numbers."""
    import torch
    from _floor import bare_pass

    model = ev.model.model
    device = ev.model.device
    ids = torch.tensor(ev.windows, device=device)
    bare_pass(model, ids, batch, device)  # warm-up
    return min(bare_pass(model, ids, batch, device), bare_pass(model, ids, batch, device))


def _per_scenario(rows: list[dict[str, Any]], floor: float) -> None:
    keys = ("edit_apply", "measure_subject", "guards_subject", "restore_verify")
    print(f"\nper scenario (baseline reused); subject-arm floor {floor:.2f}s")
    print(f"{'spec':28} {'wall':>6} {'/floor':>7}  " + " ".join(f"{k:>15}" for k in keys))
    for row in rows:
        t = row["timings"]
        named = sum(float(t.get(k, 0.0)) for k in keys)
        row["other_s"] = row["wall_s"] - named
        row["wall_over_floor"] = row["wall_s"] / floor
        cells = " ".join(f"{float(t.get(k, 0.0)):15.2f}" for k in keys)
        print(f"{row['spec']:28} {row['wall_s']:6.2f} {row['wall_over_floor']:6.2f}x  {cells}")
    walls = [r["wall_s"] for r in rows]
    guards = [float(r["timings"].get("guards_subject", 0.0)) for r in rows]
    print(
        f"mean wall {sum(walls) / len(walls):.2f}s = {sum(walls) / len(walls) / floor:.2f}x the "
        f"floor; guards {sum(guards) / sum(walls):.1%} of the scenarios' wall"
    )


if __name__ == "__main__":
    main()
