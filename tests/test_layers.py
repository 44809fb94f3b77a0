"""Layering rules that keep verification light and imports pointing down."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "editproof"

# Verification must work on a machine without torch: these never import it, even indirectly.
LIGHT = [
    "editproof",
    "editproof.errors",
    "editproof.fileio",
    "editproof.stats",
    "editproof.policy",
    "editproof.data",
    "editproof.report.model",
    "editproof.report.derive",
    "editproof.report.verify",
    "editproof.report.explain",
    "editproof.report.html",
    "editproof.report.charts",
    "editproof.report.format",
    "editproof.report.io",
    "editproof.report.schema",
    "editproof.cli.app",
    "editproof.cli._entry",
    "editproof._preload",
    "editproof._compile_ahead",
    "editproof.lm",
    "editproof.verdict",
    "editproof.verdict.catalogue",
    "editproof.verdict.model",
    "editproof.verdict.views",
    "editproof.verdict.records",
    "editproof.verdict.evidence",
    "editproof.verdict.requirements",
    "editproof.verdict.summaries",
    "editproof.verdict.matrix",
    "editproof.verdict.compile",
    "editproof.verdict.text",
    "editproof.verdict.write",
    "editproof.verdict.schema",
    "editproof.pack",
    "editproof.pack.build",
    "editproof.pack.verify",
    "editproof.pack.recompute",
    "editproof.pack.keys",
    "editproof.pack.gpg",
    "editproof.pack.index",
    "editproof.pack.schema",
    "editproof.pack.source",
    "editproof.pack.verification",
    "editproof.pack.attestation",
    "editproof.pack.archive",
    "editproof.pack.diff",
    "editproof.cli.pack",
    "editproof.cli.diff",
    "editproof.cli._diff_view",
]


@pytest.mark.parametrize("module", LIGHT)
def test_light_modules_do_not_import_torch(module: str) -> None:
    code = (
        f"import sys, {module}; "
        "heavy = [m for m in ('torch', 'transformers', 'safetensors') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"{module} pulls in {out.stdout.strip()}"


# Floors, lowest first. A module may import its own floor or lower ones, never higher.
FLOORS = [
    {"_preload", "_compile_ahead", "errors", "fileio", "lm", "data", "policy", "stats"},
    {"edits", "measure", "report", "guards", "verdict"},
    {"evaluation", "evalconfig", "facts", "checkpoints", "tuning", "calibration", "pack"},
    {"suite"},
    {"cli", "__main__"},
]


def _floor(part: str) -> int:
    for level, names in enumerate(FLOORS):
        if part in names:
            return level
    return -1  # the package root (__init__) sits under everything


def test_imports_point_down() -> None:
    problems = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC).with_suffix("")
        own = _floor(rel.parts[0])
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.startswith("editproof.")
            ):
                target = node.module.split(".")[1]
                if _floor(target) > own:
                    problems.append(f"{'/'.join(rel.parts)} imports editproof.{target}")
    assert not problems, problems


# pack/ reads a run through its files: it may use verdict/, report/, stats/ and the ground
# floor, never the measuring side; and the suite never imports pack (`editproof run` composes).
PACK_MAY_IMPORT = {"pack", "verdict", "report", "stats", "errors", "fileio", "policy", "data"}


def _editproof_imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("editproof"):
            out.add(node.module.split(".")[1] if "." in node.module else "")
            out.update(a.name for a in node.names if node.module == "editproof")
        elif isinstance(node, ast.Import):
            out.update(a.name.split(".")[1] for a in node.names if a.name.startswith("editproof."))
    return out


def test_pack_imports_only_light_layers() -> None:
    problems = []
    for path in (SRC / "pack").rglob("*.py"):
        bad = _editproof_imports(path) - PACK_MAY_IMPORT - {"", "__version__"}
        if bad:
            problems.append(f"pack/{path.name} imports {sorted(bad)}")
    assert not problems, problems


def test_suite_never_imports_pack() -> None:
    problems = [
        f"suite/{path.name}"
        for path in (SRC / "suite").rglob("*.py")
        if "pack" in _editproof_imports(path)
    ]
    assert not problems, problems
