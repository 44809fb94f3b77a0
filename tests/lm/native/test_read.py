"""Reading safetensors files into device tensors on several threads (lm/native/read.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from safetensors.torch import load_file, save_file  # noqa: E402

from editproof.errors import InvalidInputError  # noqa: E402
from editproof.lm.native import read  # noqa: E402
from editproof.lm.preflight import read_header  # noqa: E402

CUDA = torch.cuda.is_available()


def _tensors() -> dict[str, torch.Tensor]:
    """Every dtype the reader takes, sizes from empty and 0-d to several blocks, odd byte
    counts (so blocks and tensors do not line up)."""
    g = torch.Generator().manual_seed(0)
    return {
        "big": torch.randn(301, 77, generator=g).to(torch.bfloat16),
        "f32": torch.randn(1001, generator=g),
        "f16": torch.randn(3, 5, generator=g).half(),
        "f64": torch.randn(7, generator=g).double(),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 4),
        "i64": torch.arange(-5, 6),
        "i32": torch.arange(13, dtype=torch.int32),
        "i16": torch.arange(3, dtype=torch.int16),
        "i8": torch.arange(-3, 4, dtype=torch.int8),
        "u8": torch.arange(9, dtype=torch.uint8),
        "flags": torch.tensor([True, False, True]),
        "f8": torch.randn(6, generator=g).to(torch.float8_e4m3fn),
        "f8b": torch.randn(6, generator=g).to(torch.float8_e5m2),
    }


def _assert_same(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert set(got) == set(want)
    for name, tensor in want.items():
        mine = got[name].cpu()
        assert mine.dtype == tensor.dtype and mine.shape == tensor.shape, name
        assert (
            mine.view(-1).view(torch.uint8).tolist() == tensor.view(-1).view(torch.uint8).tolist()
        )


@pytest.mark.parametrize("threads", [1, 2, 5])
@pytest.mark.parametrize("block", [64, 1000, 1 << 20])
def test_every_byte_lands_where_the_file_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, threads: int, block: int
) -> None:
    """Byte for byte what safetensors reads, however the data section is cut into blocks
    and shared between threads (small blocks split tensors, large ones merge them)."""
    monkeypatch.setattr(read, "BLOCK", block)
    file = tmp_path / "t.safetensors"
    save_file(_tensors(), str(file))
    got = read.read_tensors([read_header(file)], "cpu", threads=threads)
    _assert_same(got, load_file(str(file)))
    assert all(t.untyped_storage().nbytes() == t.nbytes for t in got.values() if t.numel())


def test_without_preadv_the_same_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where ``os.preadv`` is missing, ``os.pread`` and a copy give the same tensors."""
    monkeypatch.setattr(read, "BLOCK", 1000)
    monkeypatch.delattr(read.os, "preadv")
    file = tmp_path / "t.safetensors"
    save_file(_tensors(), str(file))
    _assert_same(read.read_tensors([read_header(file)], "cpu", threads=2), load_file(str(file)))


def test_several_files_and_skipped_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(read, "BLOCK", 256)
    tensors = _tensors()
    first, second = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    names = sorted(tensors)
    save_file({n: tensors[n] for n in names[:6]}, str(first))
    save_file({n: tensors[n] for n in names[6:]}, str(second))
    headers = [read_header(first), read_header(second)]
    got = read.read_tensors(headers, "cpu", skip=lambda n: n.startswith("f8"), threads=3)
    _assert_same(got, {n: t for n, t in tensors.items() if not n.startswith("f8")})


def test_a_file_cut_short_after_its_header_was_read(tmp_path: Path) -> None:
    file = tmp_path / "t.safetensors"
    save_file(_tensors(), str(file))
    header = read_header(file)
    with file.open("r+b") as handle:
        handle.truncate(file.stat().st_size - 10)
    with pytest.raises(InvalidInputError, match=r"cannot read .*t\.safetensors: it ended at byte"):
        read.read_tensors([header], "cpu", threads=2)


def test_an_unreadable_file_is_one_clear_error(tmp_path: Path) -> None:
    file = tmp_path / "t.safetensors"
    save_file({"w": torch.ones(4)}, str(file))
    header = read_header(file)
    file.unlink()
    with pytest.raises(InvalidInputError, match=r"^cannot read .*t\.safetensors: "):
        read.read_tensors([header], "cpu")


def test_a_dtype_it_does_not_load_is_named(tmp_path: Path) -> None:
    file = tmp_path / "t.safetensors"
    save_file({"w": torch.ones(4)}, str(file))
    header = read_header(file)
    entry = header.tensors["w"]
    odd = type(header)(header.path, header.data_start, {"w": type(entry)("C64", (2,), 0, 16)})
    with pytest.raises(InvalidInputError, match=r"tensor 'w' has dtype C64"):
        read.read_tensors([odd], "cpu")


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("block", [100, 1 << 20])
def test_the_gpu_path_matches_byte_for_byte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int
) -> None:
    """Pinned buffers taken in turn, copies on each thread's stream: the same bytes."""
    monkeypatch.setattr(read, "BLOCK", block)
    file = tmp_path / "t.safetensors"
    save_file(_tensors(), str(file))
    got = read.read_tensors([read_header(file)], "cuda", threads=3)
    assert all(t.device.type == "cuda" for t in got.values())
    _assert_same(got, load_file(str(file)))
