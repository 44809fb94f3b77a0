"""``random:<dir>[@seed]``: a real architecture's shape initialised on the device, no weights."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from editproof.errors import InvalidInputError, NotFoundError, UsageError
from editproof.lm import parse_source
from editproof.lm.preflight import preflight_source
from editproof.lm.random_init import estimate_parameters, read_config

torch = pytest.importorskip("torch")


def _config_dir(tmp_path: Path, arch: str, tokenizer: Any) -> Path:
    from tests.models import tiny_model

    folder = tmp_path / f"{arch}-shape"
    tiny_model(arch).config.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    assert not list(folder.glob("*.safetensors"))
    return folder


def test_parse_random_sources(tmp_path: Path, tiny_tokenizer: Any) -> None:
    folder = _config_dir(tmp_path, "llama", tiny_tokenizer)
    src = parse_source(f"random:{folder}@7")
    assert (src.kind, src.path, src.seed) == ("random", folder.resolve(), 7)
    assert src.label == f"random:{folder.resolve()}@7"
    assert parse_source(f"random:{folder}").seed == 0
    assert parse_source(f"random:{folder}").identity != src.identity
    with pytest.raises(NotFoundError, match=r"needs a directory with a config\.json"):
        parse_source(f"random:{tmp_path / 'nowhere'}@1")
    with pytest.raises(UsageError):
        parse_source("randomly")


@pytest.mark.parametrize("arch", ["llama", "mistral", "qwen2"])
def test_parameter_estimate_is_exact_for_decoders(
    tmp_path: Path, tiny_tokenizer: Any, arch: str
) -> None:
    from tests.models import tiny_model

    model = tiny_model(arch)
    unique = {p.data_ptr(): p.numel() for p in model.parameters()}
    folder = _config_dir(tmp_path, arch, tiny_tokenizer)
    assert estimate_parameters(read_config(folder)) == sum(unique.values())


def test_preflight_checks_config_and_tokenizer(tmp_path: Path, tiny_tokenizer: Any) -> None:
    folder = _config_dir(tmp_path, "llama", tiny_tokenizer)
    preflight_source(f"random:{folder}")
    (folder / "tokenizer.json").unlink()
    (folder / "tokenizer_config.json").unlink()
    with pytest.raises(NotFoundError, match="no tokenizer"):
        preflight_source(f"random:{folder}")
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text('{"model_type": "llama"}')
    with pytest.raises(InvalidInputError, match="lacks the decoder fields"):
        preflight_source(f"random:{bare}")


def test_built_model_is_seeded_complete_and_runs(tmp_path: Path, tiny_tokenizer: Any) -> None:
    from editproof.lm import load_model
    from editproof.lm.digest import weight_digest
    from tests.models import tiny_model

    folder = _config_dir(tmp_path, "llama", tiny_tokenizer)
    a = load_model(parse_source(f"random:{folder}@1"), device="cpu")
    again = load_model(parse_source(f"random:{folder}@1"), device="cpu")
    other = load_model(parse_source(f"random:{folder}@2"), device="cpu")
    assert a.tokenizer is not None and a.dtype == "float32"
    assert weight_digest(a.model).sha256 == weight_digest(again.model).sha256
    assert weight_digest(a.model).sha256 != weight_digest(other.model).sha256
    for name, t in [*a.model.named_parameters(), *a.model.named_buffers()]:
        assert not t.is_meta and bool(torch.isfinite(t).all()), name
    # Computed buffers (rotary frequencies) equal those of a normally built model.
    ref = dict(tiny_model("llama").named_buffers())
    for name, buf in a.model.named_buffers():
        assert torch.equal(buf, ref[name]), name
    # Tied embeddings stay tied; the initialiser's scale is the config's.
    assert a.model.lm_head.weight.data_ptr() == a.model.model.embed_tokens.weight.data_ptr()
    std = float(a.model.model.layers[0].mlp.up_proj.weight.std())
    assert abs(std - a.model.config.initializer_range) < 0.005
    ids = a.tokenizer("def f(x): return x", return_tensors="pt").input_ids
    assert torch.isfinite(a.model(ids).logits).all()


def test_suite_sizes_and_names_random_models(tmp_path: Path, tiny_tokenizer: Any) -> None:
    from editproof.suite.placement import weight_bytes
    from editproof.suite.revisions import resolve_revisions
    from editproof.suite.suites import model_dir_name

    folder = _config_dir(tmp_path, "mistral", tiny_tokenizer)
    spec = f"random:{folder}@3"
    assert weight_bytes(spec) == 2 * estimate_parameters(read_config(folder))  # type: ignore[operator]
    assert model_dir_name(spec) == "mistral-shape_random3"
    revs = resolve_revisions([spec], net=False, run_dir=tmp_path, revisions_file=None)
    assert revs["models"][spec] == {"kind": "random", "path": str(folder.resolve()), "seed": 3}
    shutil.rmtree(folder)
