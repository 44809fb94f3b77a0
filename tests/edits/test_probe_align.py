"""rmt_norm_noise aligned with the layer inputs: rows pulled toward the inputs' dominant
direction, measured on a sample of token windows (seeded random tokens without one)."""

from __future__ import annotations

from typing import Any

import pytest

from editproof.edits import applied, parse_spec
from editproof.errors import UsageError
from tests.models import tiny_model

NAME = "model.layers.0.mlp.up_proj.weight"
SPEC = "rmt_norm_noise:blend=0.5,layers=0,max_params=1,row_frac=0.5"


def _inputs(model: Any, sample: list[list[int]]) -> Any:
    import torch

    got: list[Any] = []
    module = model.get_submodule(NAME.removesuffix(".weight"))
    hook = module.register_forward_pre_hook(lambda _m, a: got.append(a[0].reshape(-1, 32)))
    with torch.inference_mode():
        model(torch.tensor(sample))
    hook.remove()
    _, _, vh = torch.linalg.svd(got[0].float(), full_matrices=False)
    return vh[0]


def test_rows_move_toward_the_input_direction() -> None:
    import torch

    model = tiny_model()
    sample = [[(7 * i + j) % 300 for j in range(16)] for i in range(4)]
    d = _inputs(model, sample)
    before = model.get_parameter(NAME).detach().clone()
    with applied(model, SPEC, sample=sample) as rec:
        after = model.get_parameter(NAME).detach().clone()
        injected = rec.model_dump()["injected"]
    assert injected["align"] == "input" and injected["aligned_matrices"] == [NAME]
    assert injected["direction_source"] == "4 evaluation windows"
    changed = (after != before).any(dim=1)
    assert int(changed.sum()) == before.shape[0] // 2  # row_frac 0.5
    cos = lambda w: (w @ d).abs() / torch.linalg.norm(w, dim=1)  # noqa: E731
    assert bool((cos(after[changed]) > cos(before[changed])).all())
    # norms preserved, and the baseline is back after the block
    assert torch.allclose(after.norm(dim=1), before.norm(dim=1), rtol=1e-5)
    assert torch.equal(model.get_parameter(NAME), before)


def test_without_a_sample_seeded_tokens_are_used_deterministically() -> None:
    import torch

    model = tiny_model()
    outs = []
    for _ in range(2):
        with applied(model, SPEC) as rec:
            outs.append(model.get_parameter(NAME).detach().clone())
            assert rec.model_dump()["injected"]["direction_source"] == ("seeded random tokens")
    assert torch.equal(outs[0], outs[1])


def test_random_alignment_is_the_reference_construction() -> None:
    model = tiny_model()
    with applied(model, SPEC + ",align=random", sample=[[1, 2, 3, 4]]) as rec:
        injected = rec.model_dump()["injected"]
    assert injected["align"] == "random" and "aligned_matrices" not in injected


def test_bad_alignment_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="align must be input or random"):
        parse_spec("rmt_norm_noise:align=sideways")
