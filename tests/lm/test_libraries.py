"""Up-front imports: each part timed, unused optional packages hidden only while importing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import transformers.utils as tu
import transformers.utils.import_utils as iu

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
