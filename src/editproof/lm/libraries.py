"""Import torch and transformers once, up front, each timed, and nothing a causal LM never runs.

On the GPU image we measure on, importing transformers' model classes takes 6 to 7 s, and
1.4 to 1.7 s of that is scikit-learn (imported by the assisted-generation module) and SciPy
(object-detection losses), pulled in only because they are installed. editproof never
generates text and never trains a detector, so while transformers' model classes import,
its two availability checks answer False; they are put back right after. The modules that
read the checks during that import keep their answer (assisted generation with a ROC curve
and DETR-style losses are unavailable in an editproof process; nothing else changes).

torch.distributed is not hidden the same way: transformers (5.17 and 5.24, the versions
checked) imports ``torch._dynamo`` while its model classes import, and that imports SymPy
and ``torch.distributed.tensor`` itself, so telling transformers that torch.distributed is
absent would patch a dependency for the whole process and save nothing (decision 29).

On a CUDA machine the driver, the first device's context, cuBLAS and the attention kernel
start on a thread beside the transformers import (or, on the native forward, beside choosing
it), so that start-up overlaps it instead of following it or landing in the first timed
forward. A run on the native forward does not import transformers at all (decision 32).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

# transformers' availability checks for packages a causal LM's forward never uses.
UNUSED_CHECKS = ("is_sklearn_available", "is_scipy_available")


@dataclass
class ImportTimes:
    """Seconds each part took; ``cuda_start`` ran on a thread beside ``transformers``,
    ``cuda_wait`` is how long the caller then waited for it (on the critical path)."""

    torch: float = 0.0
    transformers: float = 0.0
    cuda_start: float = 0.0
    cuda_wait: float = 0.0
    choose_forward: float = 0.0

    def timing_keys(self, prefix: str = "imports") -> dict[str, float]:
        """Critical-path keys for a timings file (the overlapped start is not among them)."""
        out = {f"{prefix}_torch": self.torch, f"{prefix}_transformers": self.transformers}
        if self.choose_forward:
            out["choose_forward"] = self.choose_forward
        if self.cuda_wait:
            out["cuda_start_wait"] = self.cuda_wait
        return out


def _false() -> bool:
    return False


@contextmanager
def unused_packages_hidden() -> Iterator[list[str]]:
    """transformers' checks in :data:`UNUSED_CHECKS` answer False inside the block (in the
    module that defines them and in ``transformers.utils``, where model code imports them
    from); the names that were found are yielded. An unknown transformers layout is left
    alone. ``EDITPROOF_IMPORT_ALL=1`` turns this off."""
    if os.environ.get("EDITPROOF_IMPORT_ALL") == "1":
        yield []
        return
    try:
        import transformers.utils as utils
        import transformers.utils.import_utils as import_utils
    except ImportError:
        yield []
        return
    saved: list[tuple[Any, str, Any]] = []
    for name in UNUSED_CHECKS:
        for module in (import_utils, utils):
            if callable(getattr(module, name, None)):
                saved.append((module, name, getattr(module, name)))
                setattr(module, name, _false)
    try:
        yield sorted({name for _, name, _ in saved})
    finally:
        for module, name, original in saved:
            setattr(module, name, original)


def _start_cuda(device: str, done: dict[str, float]) -> None:
    """Start CUDA for the first device the model goes to and warm what its first forward
    runs: the driver and the device's context, cuBLAS / cuBLASLt (a small bf16 matrix
    product) and the causal attention kernel (a small ``scaled_dot_product_attention`` at
    the usual head size of 128). On a CUDA machine this runs on a thread beside the
    transformers import; without CUDA it does nothing. Never raises: a broken CUDA setup is
    left for the load to report in its own words. ``done["seconds"]`` is how long it took."""
    t0 = time.perf_counter()
    try:
        import torch

        if torch.cuda.is_available():
            index = int(device.split(":", 1)[1]) if device.startswith("cuda:") else 0
            if index < torch.cuda.device_count():
                _warm_cuda(index)
    except Exception:  # the load reports a broken CUDA setup in its own words
        pass
    done["seconds"] = time.perf_counter() - t0


def _warm_cuda(index: int) -> None:
    import torch

    device = torch.device("cuda", index)
    # The dtype a model loads in on a GPU unless --dtype says otherwise (loading.resolve_dtype).
    a = torch.ones(64, 64, device=device, dtype=torch.bfloat16)
    torch.matmul(a, a)
    q = torch.ones(1, 4, 16, 128, device=device, dtype=torch.bfloat16)
    torch.nn.functional.scaled_dot_product_attention(q, q, q, is_causal=True)
    torch.cuda.synchronize(device)


def import_model_libraries(
    *, device: str = "auto", with_transformers: bool | Callable[[], bool] = True
) -> ImportTimes:
    """Import torch and transformers' auto classes (a missing package is left for the load
    to report, with its install hint). Unless ``device`` is ``cpu``, CUDA starts on a thread
    beside what follows torch's import when a GPU is visible (``cuda:N``: on that GPU).

    ``with_transformers`` False (or a callable, asked once torch is imported, that answers
    False; its seconds are ``choose_forward``) leaves transformers out: a run on the native
    forward never imports it unless a tokenizer has to be loaded."""
    times = ImportTimes()
    t0 = time.perf_counter()
    try:
        import torch  # noqa: F401
    except ImportError:
        return times
    times.torch = time.perf_counter() - t0
    cuda: dict[str, float] = {}
    thread = None
    if device != "cpu" and os.environ.get("CUDA_VISIBLE_DEVICES", None) != "":
        thread = threading.Thread(target=_start_cuda, args=(device, cuda), daemon=True)
        thread.start()
    wanted = with_transformers
    if callable(with_transformers):
        t0 = time.perf_counter()
        wanted = with_transformers()
        times.choose_forward = time.perf_counter() - t0
    if wanted:
        t0 = time.perf_counter()
        try:
            with unused_packages_hidden():
                # Newer transformers import the model machinery lazily, on the first load:
                # import it here too, while the checks are hidden, so the load pays nothing.
                import transformers.modeling_utils  # noqa: F401
                from transformers import (  # noqa: F401
                    AutoConfig,
                    AutoModelForCausalLM,
                    AutoTokenizer,
                )
        except ImportError:
            pass
        times.transformers = time.perf_counter() - t0
    if thread is not None:
        t0 = time.perf_counter()
        thread.join()
        times.cuda_wait = time.perf_counter() - t0
        times.cuda_start = cuda.get("seconds", 0.0)
    return times


def quiet_transformers() -> None:
    """transformers' progress bars and advisories off: through the environment, which a
    later import reads, and through its logging when it is already imported."""
    import sys

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if "transformers" in sys.modules:
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()


def forward_needs_transformers(config: Any) -> bool:
    """Whether an evaluation of ``config`` (an EvaluationConfig) runs transformers' forward;
    True when that cannot be told yet (the Evaluator reports the reason itself)."""
    from editproof.errors import EditproofError
    from editproof.lm.forward import forward_for

    try:
        chosen, _ = forward_for(config.forward, config.baseline, config.subject, config.device)
    except EditproofError:
        return True
    return chosen != "native"
