"""Device slots and memory-aware placement (no GPU needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from editproof.errors import UsageError
from editproof.suite.executor import LocalExecutor, Slot, device_slots
from editproof.suite.placement import gpus_needed, weight_bytes
from editproof.suite.store import Store, Task

GB = 1024**3


def test_gpus_needed() -> None:
    assert gpus_needed(None, 80 * GB) == 1
    assert gpus_needed(14 * GB, None) == 1
    assert gpus_needed(14 * GB, 80 * GB) == 1
    assert gpus_needed(145 * GB, 140 * GB) == 2  # a 72B in bf16 on two H200s
    assert gpus_needed(145 * GB, 80 * GB) == 3


def test_weight_bytes_reads_file_sizes(tiny_dir: Path) -> None:
    size = weight_bytes(str(tiny_dir))
    assert size == (tiny_dir / "model.safetensors").stat().st_size
    assert weight_bytes("demo") is None


def test_device_slots() -> None:
    assert device_slots(None, "cpu") == [Slot("cpu", "cpu", None)]
    groups = device_slots(["0+1", "2"], "auto")
    assert [(s.name, s.visible) for s in groups] == [("gpu0+1", "0,1"), ("gpu2", "2")]
    with pytest.raises(UsageError, match="not a GPU index"):
        device_slots(["x"], "auto")


def test_model_larger_than_the_host_fails_its_tasks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.suite.test_suites_plan import _config

    config = _config(models=["org/a"], model_dirs={"org/a": "org__a"})
    store = Store(tmp_path)
    store.add_tasks([Task(id="setup/org__a", type="setup", model="org/a"),
                     Task(id="x", type="eval", model="org/a", deps=["setup/org__a"])])  # fmt: skip
    store.close()
    slots = [Slot("gpu0", "cuda", "0"), Slot("gpu1", "cuda", "1")]
    ex = LocalExecutor(tmp_path, config, slots)
    monkeypatch.setattr(ex, "_units_needed", lambda _m: 3)
    monkeypatch.setattr(ex, "_start", lambda *_a: pytest.fail("no worker may start"))
    ex.run(["org/a"])
    store = Store(tmp_path)
    tasks = {t.id: t for t in store.tasks()}
    assert all(t.status == "failed" for t in tasks.values())
    assert "needs 3 GPUs" in (tasks["x"].error or "")
