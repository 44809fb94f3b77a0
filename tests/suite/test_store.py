"""The task table: claiming in dependency order, failures, retries, resume checks."""

from __future__ import annotations

from pathlib import Path

from editproof.fileio import atomic_write_text, file_sha256
from editproof.suite.store import Store, Task


def _store(tmp_path: Path) -> Store:
    s = Store(tmp_path)
    s.add_tasks(
        [
            Task(id="setup", type="setup", model="m"),
            Task(id="a", type="eval", model="m", deps=["setup"]),
            Task(id="b", type="eval", model="m", deps=["a"]),
            Task(id="other", type="setup", model="n"),
        ]
    )
    return s


def test_claim_follows_dependencies_and_models(tmp_path: Path) -> None:
    s = _store(tmp_path)
    first = s.claim("m", "w1")
    assert first is not None and first.id == "setup" and first.attempts == 1
    assert s.claim("m", "w1") is None  # a waits for setup
    s.finish("setup", {}, 0.1)
    nxt = s.claim("m", "w1")
    assert nxt is not None and nxt.id == "a"
    assert s.get("other").status == "pending"  # another model's task is never claimed
    assert s.add_tasks([Task(id="a", type="eval", model="m")]) == 0  # idempotent


def test_failed_dependency_fails_dependents(tmp_path: Path) -> None:
    s = _store(tmp_path)
    s.claim("m", "w")
    s.fail("setup", "boom", "permanent")
    assert s.claim("m", "w") is None
    assert s.get("a").status == "failed" and "dependency failed: setup" in (s.get("a").error or "")
    assert s.claim("m", "w") is None
    assert s.get("b").status == "failed"
    assert not s.has_open("m")


def test_retry_backoff_and_history(tmp_path: Path) -> None:
    s = _store(tmp_path)
    s.claim("m", "w")
    s.fail("setup", "flaky", "transient", retry_after=3600)
    t = s.get("setup")
    assert t.status == "pending" and t.history[0]["error"] == "flaky"
    assert s.claim("m", "w") is None  # still in backoff


def test_resume_resets_and_rechecks_outputs(tmp_path: Path) -> None:
    s = _store(tmp_path)
    out = tmp_path / "x" / "out.json"
    atomic_write_text(out, "{}")
    s.claim("m", "w")
    s.finish("setup", {"x/out.json": file_sha256(out)}, 0.1)
    s.claim("m", "w")  # a is running when the process dies
    assert s.reset_for_resume() == ["a"]
    assert s.get("a").status == "pending" and s.get("a").attempts == 0
    assert s.verify_outputs() == []
    out.write_text('{"changed": true}')
    assert s.verify_outputs() == ["setup"]
    assert s.get("setup").status == "pending"


def test_fail_open_ends_only_that_models_unfinished_tasks(tmp_path: Path) -> None:
    s = _store(tmp_path)
    s.claim("m", "w")
    s.finish("setup", {}, 0.1)
    s.claim("m", "w")  # a is running, b pending
    s.fail_open("m", "worker died 3 times")
    assert {t: s.get(t).status for t in ("setup", "a", "b", "other")} == {
        "setup": "done", "a": "failed", "b": "failed", "other": "pending",
    }  # fmt: skip
    assert s.get("a").error == "worker died 3 times" and s.get("a").error_kind == "worker_died"
