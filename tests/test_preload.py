"""The CUDA driver's start beside a command's imports (editproof._preload)."""

from __future__ import annotations

from typing import Any

import pytest

from editproof import _preload


@pytest.fixture(autouse=True)
def fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_preload, "_thread", None)
    monkeypatch.setattr(_preload, "state", {})
    monkeypatch.delenv("EDITPROOF_PRELOAD", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


@pytest.mark.parametrize(
    ("device", "index"),
    [("auto", 0), ("cuda", 0), ("cuda:3", 3), ("cpu", None), ("mps", None), ("cuda:x", None)],
)
def test_device_index(device: str, index: int | None) -> None:
    assert _preload.device_index(device) == index


def test_option_value_takes_both_spellings_and_the_last() -> None:
    args = ["evaluate", "--device", "cpu", "--out", "x", "--device=cuda:1"]
    assert _preload.option_value(args, "--device", "auto") == "cuda:1"
    assert _preload.option_value(["evaluate"], "--device", "auto") == "auto"
    assert _preload.option_value(["evaluate", "--device"], "--device", "auto") == "auto"


def _record_starts(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    started: list[int] = []
    monkeypatch.setattr(_preload, "start", lambda index=0: started.append(index) or True)
    return started


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["evaluate", "--baseline", "demo"], [0]),
        (["evaluate", "--device", "cuda:2"], [2]),
        (["tune", "--device=cuda"], [0]),
        (["evaluate", "--device", "cpu"], []),
        (["evaluate", "--help"], []),
        (["verify", "pack"], []),  # no model in this process
        (["suite", "demo"], []),  # its workers are other processes
        ([], []),
    ],
)
def test_for_command_starts_only_for_a_model_on_a_cuda_device(
    monkeypatch: pytest.MonkeyPatch, args: list[str], expected: list[int]
) -> None:
    started = _record_starts(monkeypatch)
    assert _preload.for_command(args) == bool(expected)
    assert started == expected


@pytest.mark.parametrize(
    ("name", "value"), [("EDITPROOF_PRELOAD", "0"), ("CUDA_VISIBLE_DEVICES", "")]
)
def test_start_is_off_when_asked_or_when_no_gpu_is_visible(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    assert _preload.start(0) is False
    assert _preload._thread is None


class FakeDriver:
    """libcuda's four calls; ``fail`` names the one that returns an error."""

    def __init__(self, fail: str | None = None, devices: int = 1) -> None:
        self.fail = fail
        self.devices = devices
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any) -> int:
            self.calls.append(name)
            if name == "cuDeviceGetCount":
                args[0]._obj.value = self.devices
            return 1 if name == self.fail else 0

        return call


def _run_with(monkeypatch: pytest.MonkeyPatch, driver: FakeDriver, index: int = 0) -> None:
    monkeypatch.setattr(_preload.ctypes, "CDLL", lambda name: driver)
    assert _preload.start(index) is True
    _preload.wait(10)


def test_the_thread_retains_the_devices_primary_context(monkeypatch: pytest.MonkeyPatch) -> None:
    driver = FakeDriver()
    _run_with(monkeypatch, driver)
    assert driver.calls == ["cuInit", "cuDeviceGetCount", "cuDeviceGet", "cuDevicePrimaryCtxRetain"]
    assert "error" not in _preload.state and float(_preload.state["context"]) >= 0
    assert _preload.start(0) is False  # once per process


@pytest.mark.parametrize("fail", ["cuInit", "cuDeviceGet", "cuDevicePrimaryCtxRetain"])
def test_a_failing_driver_call_stops_the_thread_quietly(
    monkeypatch: pytest.MonkeyPatch, fail: str
) -> None:
    driver = FakeDriver(fail=fail)
    _run_with(monkeypatch, driver)
    assert _preload.state["error"] == fail
    assert driver.calls[-1] == fail


def test_a_device_index_beyond_the_gpus_retains_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    driver = FakeDriver(devices=1)
    _run_with(monkeypatch, driver, index=1)
    assert _preload.state["error"] == "cuDeviceGetCount"
    assert "cuDevicePrimaryCtxRetain" not in driver.calls


def test_no_driver_library_is_recorded_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> Any:
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(_preload.ctypes, "CDLL", missing)
    assert _preload.start(0) is True
    _preload.wait(10)
    assert "cannot open" in str(_preload.state["error"])
