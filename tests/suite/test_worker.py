"""The worker's error classes and determinism switch, without loading a model."""

from __future__ import annotations

from pathlib import Path

import pytest

from editproof.errors import InvalidInputError
from editproof.fileio import atomic_write_text
from editproof.suite import layout
from editproof.suite.store import Store, Task
from editproof.suite.worker import Worker, apply_determinism, is_oom


@pytest.fixture
def worker(tmp_path: Path) -> Worker:
    from tests.suite.test_suites_plan import _config

    config = _config(models=["org/a"], model_dirs={"org/a": "org__a"}, batch_size=8)
    atomic_write_text(tmp_path / layout.CONFIG, config.to_json())
    store = Store(tmp_path)
    store.add_tasks([Task(id="t", type="eval", model="org/a", params={"spec": "noop"})])
    store.close()
    return Worker(tmp_path, "w", "org/a", "cpu")


def _claim(w: Worker) -> Task:
    task = w.store.claim("org/a", "w")
    assert task is not None
    return task


def test_oom_retries_with_half_the_batch(worker: Worker) -> None:
    task = _claim(worker)
    worker._record_failure(task, RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"))
    again = worker.store.get("t")
    assert again.status == "pending" and again.params["batch_size"] == 4
    assert again.error_kind == "oom" and again.history[0]["kind"] == "oom"


def test_user_errors_fail_at_once_and_others_back_off(worker: Worker) -> None:
    task = _claim(worker)
    worker._record_failure(task, ValueError("flaky"))
    t = worker.store.get("t")
    assert t.status == "pending" and t.error_kind == "transient" and t.not_before > 0
    worker.store._db.execute("UPDATE tasks SET not_before=0")
    task = _claim(worker)
    worker._record_failure(task, InvalidInputError("corrupt file x"))
    t = worker.store.get("t")
    assert t.status == "failed" and t.error_kind == "permanent" and t.attempts == 2


def test_is_oom() -> None:
    assert is_oom(RuntimeError("CUDA out of memory"))
    assert not is_oom(RuntimeError("shape mismatch"))


def test_strict_determinism_switches_torch() -> None:
    import torch

    before = torch.are_deterministic_algorithms_enabled()
    try:
        assert apply_determinism("strict") == "strict"
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.backends.cuda.matmul.allow_tf32
        assert apply_determinism("throughput") == "throughput"
        assert not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(before)


def test_a_failed_restore_poisons_the_worker(worker: Worker) -> None:
    from editproof.errors import RestoreError
    from editproof.suite.worker import Poisoned

    task = _claim(worker)
    with pytest.raises(Poisoned, match="left 1 tensor"):
        worker._record_failure(
            task, RestoreError("restoring the baseline after the edit left 1 tensor(s) different")
        )
