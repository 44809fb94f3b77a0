"""The pack target is checked before any measuring: a real write, not a permission guess."""

from __future__ import annotations

from pathlib import Path

import pytest

from editproof.errors import OutputError
from editproof.pack.build import check_target


def test_a_new_dir_under_a_writable_parent_is_fine(tmp_path: Path) -> None:
    check_target(tmp_path / "deep" / "er" / "pack")
    assert not (tmp_path / "deep").exists()  # the check leaves nothing behind
    assert list(tmp_path.iterdir()) == []


def test_a_file_in_the_way_is_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="is not a directory"):
        check_target(tmp_path / "f" / "pack")
    with pytest.raises(OutputError, match="exists and is not a directory"):
        check_target(tmp_path / "f")


def test_a_non_empty_dir_is_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "pack").mkdir()
    check_target(tmp_path / "pack")  # empty: fine
    (tmp_path / "pack" / "x").write_text("x")
    with pytest.raises(OutputError, match="never overwritten"):
        check_target(tmp_path / "pack")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs procfs")
def test_a_virtual_file_system_is_refused_even_for_root() -> None:
    with pytest.raises(OutputError, match="cannot write the pack dir"):
        check_target(Path("/proc/editproof-no-such/pack"))
