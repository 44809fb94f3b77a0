"""How far two dumps of the guards' baseline signatures are apart, per guard.

    python bench/signature_diff.py OLD.json NEW.json

The dumps come from ``bench/process_edges.py guardsgpu --dump FILE`` (two versions of the
code, the same model and windows). Prints, for the RMT guard's per-module edge risk and the
variance guard's per-branch median and mean energy, the largest relative difference and
where it is; and whether the contracts are equal.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any


def _largest(old: dict[str, Any], new: dict[str, Any], key: str) -> tuple[float, str]:
    worst, where = 0.0, ""
    for name, info in old.items():
        a, b = info.get(key), new.get(name, {}).get(key)
        if a is None or b is None:
            if a != b:
                return math.inf, name
            continue
        rel = abs(b - a) / max(abs(a), 1e-30)
        if rel > worst:
            worst, where = rel, name
    return worst, where


def main() -> None:
    old, new = (json.loads(Path(path).read_text()) for path in sys.argv[1:3])
    for guard, table, keys in (
        ("rmt", "modules", ("edge_risk",)),
        ("variance", "branches", ("median_sq", "mean_sq")),
    ):
        a, b = old[guard]["data"][table], new[guard]["data"][table]
        same = old[guard]["contract"] == new[guard]["contract"]
        print(f"{guard}: {len(a)} / {len(b)} entries, contracts {'equal' if same else 'differ'}")
        for key in keys:
            rel, where = _largest(a, b, key)
            print(f"  {key}: largest relative difference {rel:.2e} ({where})")
    fam_a, fam_b = old["rmt"]["data"]["families"], new["rmt"]["data"]["families"]
    for fam in sorted(fam_a):
        print(f"  rmt family {fam}: {fam_a[fam]} -> {fam_b.get(fam)}")


if __name__ == "__main__":
    main()
