"""Model revisions: --net 1 pins hub commits (gated/private refused); --net 0 needs pins."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

from editproof.errors import InvalidInputError, NotFoundError
from editproof.suite.revisions import pinned_source, resolve_revisions


class FakeApi:
    info: ClassVar[dict[str, Any]] = {}

    def model_info(self, repo: str, revision: str | None = None) -> Any:
        return SimpleNamespace(sha="c0ffee" * 6 + "abcd", **self.info)


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> type[FakeApi]:
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    FakeApi.info = {"gated": False, "private": False}
    return FakeApi


def test_net_1_pins_commits(hub: type[FakeApi], tmp_path: Path, tiny_dir: Path) -> None:
    data = resolve_revisions(["org/model", str(tiny_dir)], net=True, run_dir=tmp_path,
                             revisions_file=None)  # fmt: skip
    assert data["models"]["org/model"]["revision"].startswith("c0ffee")
    assert data["models"][str(tiny_dir)]["kind"] == "local"
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "model_revisions.json").write_text(json.dumps(data))
    assert pinned_source(tmp_path, "org/model") == "org/model@" + "c0ffee" * 6 + "abcd"
    # offline, the pins in the run dir are enough
    again = resolve_revisions(["org/model"], net=False, run_dir=tmp_path, revisions_file=None)
    assert again["models"]["org/model"] == data["models"]["org/model"]


def test_gated_or_private_refused(hub: type[FakeApi], tmp_path: Path) -> None:
    hub.info = {"gated": True, "private": False}
    with pytest.raises(InvalidInputError, match="gated"):
        resolve_revisions(["org/m"], net=True, run_dir=tmp_path, revisions_file=None)


def test_net_0_without_pins_names_every_model(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match=r"a/b, c/d .*--net 1"):
        resolve_revisions(["a/b", "c/d"], net=False, run_dir=tmp_path, revisions_file=None)
    with pytest.raises(NotFoundError, match="not found"):
        resolve_revisions(["a/b"], net=False, run_dir=tmp_path, revisions_file=str(tmp_path / "x"))
