"""Up-front imports: each part timed, unused optional packages hidden only while importing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers.utils as tu
import transformers.utils.import_utils as iu

from editproof.lm import libraries
from editproof.lm.libraries import UNUSED_CHECKS, import_model_libraries, unused_packages_hidden


def test_checks_answer_false_inside_and_are_put_back() -> None:
    before = {name: getattr(tu, name) for name in UNUSED_CHECKS}
    with unused_packages_hidden() as hidden:
        assert hidden == sorted(UNUSED_CHECKS)
        for name in UNUSED_CHECKS:
            assert getattr(tu, name)() is False and getattr(iu, name)() is False
    for name in UNUSED_CHECKS:
        assert getattr(tu, name) is before[name] and getattr(iu, name) is before[name]


def test_checks_are_put_back_after_an_error() -> None:
    before = tu.is_scipy_available
    with pytest.raises(RuntimeError), unused_packages_hidden():
        raise RuntimeError("import failed")
    assert tu.is_scipy_available is before


def test_env_turns_hiding_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDITPROOF_IMPORT_ALL", "1")
    with unused_packages_hidden() as hidden:
        assert hidden == []
        assert tu.is_scipy_available is iu.is_scipy_available


_FRESH = (
    "import sys, tempfile\n"
    "from editproof.lm.libraries import import_model_libraries\n"
    "t = import_model_libraries(device='cpu')\n"
    "assert t.torch > 0 and t.transformers > 0 and t.cuda_wait == 0, t\n"
    "assert set(t.timing_keys()) == {'imports_torch', 'imports_transformers'}, t.timing_keys()\n"
    "from tests.models import tiny_model\n"
    "folder = tempfile.mkdtemp()\n"
    "tiny_model('llama').save_pretrained(folder)\n"
    "from transformers import AutoModelForCausalLM\n"
    "AutoModelForCausalLM.from_pretrained(folder)\n"  # lazy model code loads here on new versions
    "print(sorted(m for m in ('scipy', 'sklearn') if m in sys.modules))\n"
)


@pytest.mark.parametrize(("import_all", "hidden"), [("0", True), ("1", False)])
def test_fresh_process_loads_a_model_without_scipy(import_all: str, hidden: bool) -> None:
    """In a clean interpreter, importing up front and then loading a model imports neither
    SciPy nor scikit-learn; with the switch off, transformers imports SciPy as usual."""
    if not hidden:
        pytest.importorskip("scipy")  # the contrast needs SciPy installed (the test extra has it)
    env = {**os.environ, "EDITPROOF_IMPORT_ALL": import_all}
    out = subprocess.run(
        [sys.executable, "-c", _FRESH], capture_output=True, text=True, check=True, timeout=600,
        env=env, cwd=str(Path(__file__).resolve().parents[2]),
    )  # fmt: skip
    loaded = out.stdout.strip().splitlines()[-1]
    if hidden:
        assert loaded == "[]"
    else:
        assert "'scipy'" in loaded


def test_import_times_keys_name_the_wait_only_when_there_was_one() -> None:
    t = import_model_libraries(device="cpu")  # already imported here: near zero
    assert "cuda_start_wait" not in t.timing_keys()


def _warmed(monkeypatch: pytest.MonkeyPatch, device: str, *, gpus: int) -> list[int]:
    """The devices ``_start_cuda(device)`` warms with ``gpus`` GPUs visible (none: no CUDA)."""
    calls: list[int] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setattr(libraries, "_warm_cuda", calls.append)
    done: dict[str, float] = {}
    libraries._start_cuda(device, done)
    assert done["seconds"] >= 0
    return calls


def test_cuda_start_is_a_no_op_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _warmed(monkeypatch, "auto", gpus=0) == []
    assert _warmed(monkeypatch, "cuda:0", gpus=0) == []


def test_cuda_start_warms_the_first_device_the_model_goes_to(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert _warmed(monkeypatch, "auto", gpus=2) == [0]
    assert _warmed(monkeypatch, "cuda", gpus=2) == [0]
    assert _warmed(monkeypatch, "cuda:1", gpus=2) == [1]
    assert _warmed(monkeypatch, "cuda:2", gpus=2) == []  # not there: the load says so


def test_cuda_start_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CUDA that claims to be there and then fails (here: a CPU-only torch told it has a
    GPU) is left for the load to report; the timing is still written."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    if not torch.backends.cuda.is_built():
        with pytest.raises(Exception):  # noqa: B017 - whatever a broken CUDA raises
            libraries._warm_cuda(0)
    done: dict[str, float] = {}
    libraries._start_cuda("cuda:0", done)
    assert done["seconds"] >= 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_start_warms_cublas_and_attention_on_a_gpu() -> None:
    libraries._warm_cuda(0)  # raises if a step does not run on this GPU
    done: dict[str, float] = {}
    libraries._start_cuda("cuda:0", done)
    assert torch.cuda.is_initialized() and done["seconds"] > 0
