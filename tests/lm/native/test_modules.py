"""The native forward against transformers: same weights from the same seed, same logits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
from editproof.lm.native.build import build_random_native, load_native  # noqa: E402
from editproof.lm.native.config import NativeConfig  # noqa: E402
from editproof.lm.native.modules import inverse_frequencies  # noqa: E402
from editproof.lm.random_init import build_random  # noqa: E402

ARCHS = ["llama", "mistral", "qwen2"]


def _config_dir(tmp_path: Path, arch: str, **overrides: Any) -> tuple[Path, dict[str, Any]]:
    from tests.models import tiny_model

    folder = tmp_path / f"{arch}-config"
    config = tiny_model(arch).config
    for key, value in overrides.items():
        setattr(config, key, value)
    config.save_pretrained(str(folder))
    return folder, json.loads((folder / "config.json").read_text())


def _batch() -> tuple[Any, Any]:
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 100, (3, 40), generator=gen)
    mask = torch.ones(3, 40, dtype=torch.long)
    mask[1, 29:] = 0  # a right-padded row, as measure_nll pads a ragged batch
    return ids, mask


def _logits(model: Any, ids: Any, mask: Any) -> Any:
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, use_cache=False).logits.float()


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("arch", ARCHS)
def test_random_init_matches_transformers(tmp_path: Path, arch: str, dtype: str) -> None:
    """Same seed, same weights bit for bit, same buffers, same logits (masked or not)."""
    folder, data = _config_dir(tmp_path, arch)
    torch_dtype = getattr(torch, dtype)
    theirs = build_random(folder, 5, "cpu", torch_dtype)
    ours = build_random_native(data, 5, "cpu", torch_dtype)
    # the same module paths and class names (what the invariants guard hashes)
    assert sorted((n, type(m).__name__) for n, m in ours.named_modules()) == sorted(
        (n, type(m).__name__) for n, m in theirs.named_modules()
    )
    a, b = theirs.state_dict(), ours.state_dict()
    assert list(a) == list(b)
    assert all(torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)
    assert dict(ours.named_buffers()).keys() == dict(theirs.named_buffers()).keys()
    for (name, x), (_, y) in zip(theirs.named_buffers(), ours.named_buffers(), strict=True):
        assert x.dtype == y.dtype and torch.equal(x, y), name
    ids, mask = _batch()
    for attention in (None, mask):
        want, got = _logits(theirs, ids, attention), _logits(ours, ids, attention)
        rows = mask.bool() if attention is not None else torch.ones_like(mask).bool()
        assert (want - got)[rows].abs().max().item() <= 1e-5


def test_tied_embeddings_stay_tied(tmp_path: Path) -> None:
    _, data = _config_dir(tmp_path, "llama")
    assert data["tie_word_embeddings"]
    model = build_random_native(data, 0, "cpu", torch.float32)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    names = [n for n, _ in model.named_parameters()]
    assert "lm_head.weight" not in names


@pytest.mark.parametrize("arch", ARCHS)
def test_checkpoint_loads_like_transformers(tmp_path: Path, arch: str) -> None:
    from transformers import AutoModelForCausalLM

    from tests.models import tiny_model

    folder = tmp_path / arch
    tiny_model(arch, seed=3).save_pretrained(str(folder))
    data = json.loads((folder / "config.json").read_text())
    theirs = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    ours = load_native(data, [folder / "model.safetensors"], "cpu", torch.float32)
    a, b = theirs.state_dict(), ours.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    ids, mask = _batch()
    assert torch.equal(
        _logits(theirs, ids, mask)[mask.bool()], _logits(ours, ids, mask)[mask.bool()]
    )
    bf16 = load_native(data, [folder / "model.safetensors"], "cpu", torch.bfloat16)
    assert {p.dtype for p in bf16.parameters()} == {torch.bfloat16}
    assert bf16.model.rotary_emb.inv_freq.dtype == torch.float32


def test_sliding_window_shorter_than_the_batch(tmp_path: Path) -> None:
    """A Mistral window of 8 tokens on 40-token rows masks like transformers does."""
    folder, data = _config_dir(tmp_path, "mistral", sliding_window=8)
    theirs = build_random(folder, 1, "cpu", torch.float32)
    ours = build_random_native(data, 1, "cpu", torch.float32)
    ids, mask = _batch()
    for attention in (None, mask):
        rows = mask.bool() if attention is not None else torch.ones_like(mask).bool()
        want, got = _logits(theirs, ids, attention), _logits(ours, ids, attention)
        assert (want - got)[rows].abs().max().item() <= 1e-5
    wide = build_random_native({**data, "sliding_window": 4096}, 1, "cpu", torch.float32)
    assert not torch.allclose(_logits(wide, ids, None), _logits(ours, ids, None))


@pytest.mark.parametrize(
    "rope",
    [
        {"rope_type": "default", "rope_theta": 500000.0},
        {"rope_type": "linear", "rope_theta": 10000.0, "factor": 4.0},
        {
            "rope_type": "llama3",
            "rope_theta": 500000.0,
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64,
        },
    ],
)
def test_rotary_frequencies_match_transformers(tmp_path: Path, rope: dict[str, Any]) -> None:
    folder, data = _config_dir(tmp_path, "llama", rope_parameters=rope)
    theirs = build_random(folder, 0, "cpu", torch.float32)
    want = theirs.model.rotary_emb.inv_freq
    got = inverse_frequencies(NativeConfig(data))
    assert torch.equal(want, got)
    ours = build_random_native(data, 0, "cpu", torch.float32)
    ids, _ = _batch()
    assert (_logits(theirs, ids, None) - _logits(ours, ids, None)).abs().max().item() <= 1e-5


def test_older_rope_fields_are_read(tmp_path: Path) -> None:
    """``rope_theta`` + ``rope_scaling`` (configs written before rope_parameters)."""
    _, data = _config_dir(tmp_path, "llama")
    old = {k: v for k, v in data.items() if k != "rope_parameters"}
    old["rope_theta"] = 1234.0
    old["rope_scaling"] = {"type": "linear", "factor": 2.0}
    theta, kind, params = NativeConfig(old).rope()
    assert (theta, kind, params["factor"]) == (1234.0, "linear", 2.0)


def test_no_cache_and_hf_style_outputs(tmp_path: Path) -> None:
    _, data = _config_dir(tmp_path, "qwen2")
    model = build_random_native(data, 0, "cpu", torch.float32)
    ids, _ = _batch()
    with torch.no_grad():
        hidden = model.base_model(input_ids=ids, use_cache=False)[0]
        logits = model(ids)[0]
    assert torch.equal(model.lm_head(hidden), logits)
    assert model.model.layers[0].self_attn.q_proj.bias is not None  # qwen2: q/k/v biases
    assert model.model.layers[0].self_attn.o_proj.bias is None
    with pytest.raises(ValueError, match="no key/value cache"):
        model(ids, use_cache=True)


def test_resize_keeps_rows_and_updates_sizes(tmp_path: Path) -> None:
    for arch in ("llama", "mistral"):  # tied, untied
        _, data = _config_dir(tmp_path / arch, arch)
        model = build_random_native(data, 0, "cpu", torch.float32)
        old = model.get_input_embeddings().weight.detach().clone()
        model.resize_token_embeddings(old.shape[0] + 8)
        new = model.get_input_embeddings().weight
        assert new.shape[0] == old.shape[0] + 8 and torch.equal(new[: old.shape[0]], old)
        assert model.config.vocab_size == model.vocab_size == old.shape[0] + 8
        assert model.get_output_embeddings().weight.shape[0] == old.shape[0] + 8
        assert (model.lm_head.weight is new) == bool(data["tie_word_embeddings"])


def _tiny_checkpoint(folder: Path, arch: str) -> tuple[dict, Path, dict[str, torch.Tensor]]:
    """A tiny model saved to ``folder``: its config, its safetensors file and tensors."""
    from safetensors.torch import load_file

    from tests.models import tiny_model

    tiny_model(arch).save_pretrained(str(folder))
    file = folder / "model.safetensors"
    return json.loads((folder / "config.json").read_text()), file, load_file(str(file))


def test_a_checkpoint_that_does_not_fit_fails_in_one_line(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from editproof.errors import InvalidInputError

    data, file, tensors = _tiny_checkpoint(tmp_path / "m", "mistral")
    key = "model.layers.0.mlp.up_proj.weight"
    save_file({**tensors, key: tensors[key][:-1].contiguous()}, str(file))
    with pytest.raises(InvalidInputError, match=rf"tensor '{key}' has shape \[63, 32\]") as bad:
        load_native(data, [file], "cpu", torch.float32)
    assert "\n" not in str(bad.value)
    save_file({**tensors, key: tensors[key].to(torch.int32)}, str(file))
    with pytest.raises(InvalidInputError, match=rf"'{key}' is int32, not a floating-point"):
        load_native(data, [file], "cpu", torch.float32)


def test_a_checkpoint_that_does_not_fit_fails_before_a_byte_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shapes and dtypes are checked from the headers: a huge or wrong tensor costs
    nothing to refuse."""
    from safetensors.torch import save_file

    import editproof.lm.native.build as build
    from editproof.errors import InvalidInputError

    def no_reading(*args: object, **kwargs: object) -> None:
        raise AssertionError("the tensor data was read")

    monkeypatch.setattr(build, "read_tensors", no_reading)
    data, file, tensors = _tiny_checkpoint(tmp_path / "m", "llama")
    key = "model.layers.1.self_attn.q_proj.weight"
    save_file({**tensors, key: torch.zeros(4096, 4096)}, str(file))
    with pytest.raises(InvalidInputError, match=rf"tensor '{key}' has shape \[4096, 4096\]"):
        load_native(data, [file], "cpu", torch.float32)
    save_file({**tensors, key: tensors[key].to(torch.int8)}, str(file))
    with pytest.raises(InvalidInputError, match=rf"'{key}' is int8, not a floating-point"):
        load_native(data, [file], "cpu", torch.float32)
