"""Up-front imports: each part timed, unused optional packages hidden only while importing."""

from __future__ import annotations

import subprocess
import sys

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


def test_fresh_process_imports_no_scipy_and_names_each_part() -> None:
    """In a clean interpreter the model classes import without SciPy or scikit-learn, and
    the model classes still load (the auto classes resolve)."""
    code = (
        "import sys\n"
        "from editproof.lm.libraries import import_model_libraries\n"
        "t = import_model_libraries(device='cpu')\n"
        "assert t.torch > 0 and t.transformers > 0 and t.cuda_wait == 0, t\n"
        "assert set(t.timing_keys()) == {'imports_torch', 'imports_transformers'}, t.timing_keys()\n"
        "from transformers import AutoModelForCausalLM\n"
        "assert AutoModelForCausalLM.__name__ == 'AutoModelForCausalLM'\n"
        "print(sorted(m for m in ('scipy', 'sklearn') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=600
    )
    assert out.stdout.strip() == "[]"


def test_import_times_keys_name_the_wait_only_when_there_was_one() -> None:
    t = import_model_libraries(device="cpu")  # already imported here: near zero
    assert "cuda_start_wait" not in t.timing_keys()
