from __future__ import annotations

from pathlib import Path

import pytest

from editproof.errors import InvalidInputError, NotFoundError, UsageError
from editproof.lm.sources import parse_source


def test_demo() -> None:
    assert parse_source("demo").kind == "demo"


def test_hub_with_revision() -> None:
    src = parse_source("mistralai/Mistral-7B-v0.1@abc123")
    assert (src.kind, src.repo_id, src.revision) == ("hub", "mistralai/Mistral-7B-v0.1", "abc123")
    assert parse_source("org/name").revision is None
    assert parse_source("org/name").label == "org/name@main"


def test_local_dir(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    src = parse_source(str(tmp_path))
    assert src.kind == "local" and src.path == tmp_path.resolve()


def test_local_dir_wins_over_hub_spelling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "org" / "name").mkdir(parents=True)
    (tmp_path / "org" / "name" / "config.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    assert parse_source("org/name").kind == "local"


def test_dir_without_config_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match=r"no config\.json"):
        parse_source(str(tmp_path))


def test_gguf_file(tmp_path: Path) -> None:
    f = tmp_path / "m.gguf"
    f.write_bytes(b"GGUF")
    assert parse_source(str(f)).kind == "gguf"
    other = tmp_path / "m.bin"
    other.write_bytes(b"x")
    with pytest.raises(InvalidInputError):
        parse_source(str(other))


@pytest.mark.parametrize("spec", ["./missing", "/no/such/dir", "~/nope-xyz", "x.gguf"])
def test_missing_paths(spec: str) -> None:
    with pytest.raises(NotFoundError):
        parse_source(spec)


@pytest.mark.parametrize("spec", ["", "   ", "not a model", "a/b/c"])
def test_unparseable(spec: str) -> None:
    with pytest.raises(UsageError):
        parse_source(spec)
