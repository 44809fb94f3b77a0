"""Two evaluation reports of the same run through different forwards, compared window by
window: python3 bench/forward_compare.py A/evaluation.report.json B/evaluation.report.json

Prints each report's forward, weight digest, ratio and status, and the largest absolute and
relative difference of the per-window mean NLLs of each arm (the windows must be the same)."""

from __future__ import annotations

import json
import sys


def main(a_path: str, b_path: str) -> None:
    from pathlib import Path

    a, b = (json.loads(Path(p).read_text(encoding="utf-8")) for p in (a_path, b_path))
    for name, rep in (("A", a), ("B", b)):
        pm = rep["primary_metric"]
        print(
            f"{name}: forward {rep['baseline']['model'].get('forward', 'transformers')}, "
            f"weights {rep['baseline']['model']['weight_sha256'][:16]}, ratio {pm['ratio']:.6f}, "
            f"CI {pm['display_ci']}, status {rep['status']}"
        )
    assert a["dataset"] == b["dataset"], "different windows"
    for arm in ("baseline", "subject"):
        worst_abs = worst_rel = 0.0
        for split in ("preview", "final"):
            x, y = a[arm][split]["mean_nll"], b[arm][split]["mean_nll"]
            for p, q in zip(x, y, strict=True):
                worst_abs = max(worst_abs, abs(p - q))
                worst_rel = max(worst_rel, abs(p - q) / abs(p))
        print(f"{arm}: max |dNLL| {worst_abs:.3e}, max relative {worst_rel:.3e}")
    ratio_a, ratio_b = a["primary_metric"]["ratio"], b["primary_metric"]["ratio"]
    print(f"ratio difference {abs(ratio_a - ratio_b):.3e}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
