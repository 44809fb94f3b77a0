"""Corpus providers: happy paths and every typed error, offline and fast."""

from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from editproof.data import PROVIDERS, corpus_digest, load_corpus
from editproof.errors import InvalidInputError, NotFoundError, UsageError


def test_pydoc_corpus_is_large_and_stable() -> None:
    a = load_corpus("pydoc")
    b = load_corpus("pydoc")
    assert a.provider == "pydoc"
    assert a.n_chars > 400_000
    assert len(a.documents) > 50
    assert all(d.strip() for d in a.documents)
    assert a.sha256 == b.sha256 == corpus_digest(a.documents)
    assert a.source["provider"] == "pydoc"


def test_digest_framing_is_unambiguous() -> None:
    assert corpus_digest(["ab", "c"]) != corpus_digest(["a", "bc"])
    assert corpus_digest(["abc"]) != corpus_digest(["abc", ""])


def test_text_file(tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_text("hello world\n\nsecond paragraph\n", encoding="utf-8")
    c = load_corpus("text", path=str(f))
    assert c.documents == ("hello world\n\nsecond paragraph\n",)
    assert c.source == {"provider": "text", "path": str(f)}
    assert c.n_chars == len(c.documents[0])


def test_text_folder_recursive_sorted_and_filtered(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "b.md").write_text("bee", encoding="utf-8")
    (tmp_path / "a.txt").write_text("ay", encoding="utf-8")
    (tmp_path / "sub" / "c.rst").write_text("see", encoding="utf-8")
    (tmp_path / "blank.text").write_text("  \n\t", encoding="utf-8")
    (tmp_path / "skip.py").write_text("print()", encoding="utf-8")
    c = load_corpus("text", path=str(tmp_path))
    assert c.documents == ("ay", "bee", "see")


def test_text_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "x.py").write_text("nope", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="no text files"):
        load_corpus("text", path=str(tmp_path))


def test_text_only_blank_files(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("\n \n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="no non-blank text"):
        load_corpus("text", path=str(tmp_path))


def test_text_undecodable_names_file(tmp_path: Path) -> None:
    f = tmp_path / "bad.txt"
    f.write_bytes(b"ok \xff\xfe bad")
    with pytest.raises(InvalidInputError, match=r"bad\.txt is not UTF-8"):
        load_corpus("text", path=str(f))


def test_missing_path(tmp_path: Path) -> None:
    for provider in ("text", "jsonl"):
        with pytest.raises(NotFoundError, match="not found"):
            load_corpus(provider, path=str(tmp_path / "nope"))


def test_path_required(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--data"):
        load_corpus("text")


def test_jsonl_happy(tmp_path: Path) -> None:
    f = tmp_path / "d.jsonl"
    rows = [{"text": "one"}, {"text": "  "}, {"text": "two", "x": 1}]
    f.write_text("\n".join(json.dumps(r) for r in rows[:2]) + "\n\n" + json.dumps(rows[2]))
    c = load_corpus("jsonl", path=str(f))
    assert c.documents == ("one", "two")
    assert c.source["field"] == "text"


def test_jsonl_custom_field(tmp_path: Path) -> None:
    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps({"body": "content"}) + "\n")
    assert load_corpus("jsonl", path=str(f), field="body").documents == ("content",)


def test_jsonl_bad_line(tmp_path: Path) -> None:
    f = tmp_path / "d.jsonl"
    f.write_text('{"text": "ok"}\n\n{not json\n')
    with pytest.raises(InvalidInputError, match="line 3 is not valid JSON"):
        load_corpus("jsonl", path=str(f))


def test_jsonl_missing_field(tmp_path: Path) -> None:
    f = tmp_path / "d.jsonl"
    f.write_text('{"text": "ok"}\n{"body": "x"}\n')
    with pytest.raises(InvalidInputError, match="line 2 has no field 'text'"):
        load_corpus("jsonl", path=str(f))


@pytest.mark.parametrize(
    ("line", "match"), [("[1, 2]", "not a JSON object"), ('{"text": 3}', "is int, not a string")]
)
def test_jsonl_wrong_shapes(tmp_path: Path, line: str, match: str) -> None:
    f = tmp_path / "d.jsonl"
    f.write_text(line + "\n")
    with pytest.raises(InvalidInputError, match=match):
        load_corpus("jsonl", path=str(f))


def test_jsonl_folder_rejected(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="is a folder"):
        load_corpus("jsonl", path=str(tmp_path))


def test_unknown_provider_lists_valid() -> None:
    with pytest.raises(UsageError) as info:
        load_corpus("wiki")
    assert all(p in str(info.value) for p in PROVIDERS)
    assert "\n" not in str(info.value)


def test_misplaced_options() -> None:
    with pytest.raises(UsageError, match="--data"):
        load_corpus("pydoc", path="x")
    with pytest.raises(UsageError, match="--dataset"):
        load_corpus("pydoc", dataset="wikitext")


def test_hf_needs_dataset() -> None:
    with pytest.raises(UsageError, match="--dataset"):
        load_corpus("hf")


def test_hf_without_datasets_package(monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules makes `import datasets` raise ImportError.
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(UsageError, match=r"pip install 'editproof\[hf\]'"):
        load_corpus("hf", dataset="wikitext")


class _FakeDataset:
    def __init__(self, rows: dict[str, list[Any]]) -> None:
        self._rows = rows
        self.column_names = list(rows)

    def __getitem__(self, key: str) -> list[Any]:
        return self._rows[key]


def _fake_datasets(monkeypatch: pytest.MonkeyPatch, behaviour: Any) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    mod = types.ModuleType("datasets")

    def load_dataset(name: str, config: str | None, *, split: str) -> Any:
        calls.append(
            {
                "args": (name, config, split),
                "env": {k: os.environ.get(k) for k in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")},
            }
        )
        return behaviour()

    mod.load_dataset = load_dataset  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "datasets", mod)
    return calls


def test_hf_offline_happy_and_env_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    calls = _fake_datasets(monkeypatch, lambda: _FakeDataset({"text": ["a", " ", "b"]}))
    c = load_corpus("hf", dataset="wikitext", config="raw", split="test")
    assert c.documents == ("a", "b")
    assert c.source == {
        "provider": "hf",
        "dataset": "wikitext",
        "config": "raw",
        "split": "test",
        "field": "text",
    }
    assert calls[0]["args"] == ("wikitext", "raw", "test")
    assert calls[0]["env"] == {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    assert "HF_DATASETS_OFFLINE" not in os.environ
    assert os.environ["HF_HUB_OFFLINE"] == "0"


def test_hf_net_leaves_env_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    calls = _fake_datasets(monkeypatch, lambda: _FakeDataset({"text": ["a"]}))
    load_corpus("hf", dataset="wikitext", net=True)
    assert calls[0]["env"] == {"HF_DATASETS_OFFLINE": None, "HF_HUB_OFFLINE": None}


def test_hf_not_cached_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> Any:
        raise ConnectionError("offline mode is enabled")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    _fake_datasets(monkeypatch, missing)
    with pytest.raises(NotFoundError, match=r"'wikitext'.*--net 1"):
        load_corpus("hf", dataset="wikitext")
    assert "HF_HUB_OFFLINE" not in os.environ  # restored even on error


def test_hf_missing_column(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_datasets(monkeypatch, lambda: _FakeDataset({"content": ["a"]}))
    with pytest.raises(InvalidInputError, match=r"no column 'text' \(columns: content\)"):
        load_corpus("hf", dataset="wikitext")
