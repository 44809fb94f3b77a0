"""Load a model (and its tokenizer) from a :class:`ModelSource`, offline unless allowed.

Devices and dtypes are chosen for speed with exactness where it is cheap: bf16 on CUDA,
fp32 on CPU (CPU bf16 matmuls are slow and would blur the batch-invariance guarantee).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from editproof.data.tokenizer_facts import (
    TokenizerFacts,
    bare_encoder,
    cached_facts,
    facts_of,
    store_facts,
)
from editproof.errors import EvaluationError, InvalidInputError, NotFoundError, UsageError
from editproof.lm._offline import network
from editproof.lm.demo import demo_dir
from editproof.lm.sources import ModelSource

if TYPE_CHECKING:
    import torch

    from editproof.lm.forward import NativePlan

_DTYPES = {
    "fp32": "float32",
    "float32": "float32",
    "bf16": "bfloat16",
    "bfloat16": "bfloat16",
    "fp16": "float16",
    "float16": "float16",
}


@dataclass
class LoadedModel:
    """A model on its device with the facts the report needs about how it was loaded.

    ``tokenizer`` is None when none was asked for, or when the native forward found the
    tokenizer's facts cached (:mod:`editproof.data.tokenizer_facts`): :meth:`get_tokenizer`
    then loads it on first use."""

    source: ModelSource
    model: Any  # transformers.PreTrainedModel or NativeCausalLM; Any keeps torch out
    tokenizer: Any | None
    device: str
    dtype: str
    load_seconds: float
    resolved_revision: str | None
    forward: str = "transformers"  # which forward runs the model: "native" or "transformers"
    tokenizer_facts: TokenizerFacts | None = None
    tokenizer_location: tuple[str, dict[str, Any]] | None = None

    def encoder(self) -> Callable[[str], list[int]]:
        """Text -> token ids, no special tokens: the loaded tokenizer, else its bare
        tokenizers-library backend when the facts cache holds a verified one (no
        transformers import), else the tokenizer loaded now."""
        backend = None
        if self.tokenizer is None and self.tokenizer_facts is not None:
            backend = self.tokenizer_facts.backend_text()
        if backend is not None:
            return bare_encoder(backend)
        tok = self.get_tokenizer()
        return lambda text: list(tok.encode(text, add_special_tokens=False))

    def get_tokenizer(self) -> Any:
        """The tokenizer, loaded now if it was not at load time."""
        if self.tokenizer is None and self.tokenizer_location is not None:
            location, extra = self.tokenizer_location
            self.tokenizer = _auto_tokenizer(self.source, location, extra, net=False)
        return self.tokenizer


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when available else ``cpu``; validates explicit choices."""
    import torch

    if device == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {device} asked for, but no CUDA device is available")
        index = 0 if device == "cuda" else _cuda_index(device)
        if index >= torch.cuda.device_count():
            raise UsageError(
                f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) visible"
            )
        return f"cuda:{index}"
    raise UsageError(f"unknown --device '{device}': use auto, cpu, cuda or cuda:N")


def _cuda_index(device: str) -> int:
    try:
        return int(device.split(":", 1)[1])
    except ValueError:
        raise UsageError(f"unknown --device '{device}': use auto, cpu, cuda or cuda:N") from None


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    name = _DTYPES.get(dtype)
    if name is None:
        raise UsageError(f"unknown --dtype '{dtype}': use auto, fp32, bf16 or fp16")
    result: torch.dtype = getattr(torch, name)
    return result


def load_model(
    source: ModelSource,
    *,
    device: str = "auto",
    dtype: str = "auto",
    net: bool = False,
    tokenizer: bool = True,
    native: NativePlan | None = None,
) -> LoadedModel:
    """Load ``source`` onto ``device``. Without ``net`` nothing is ever downloaded.

    With ``native`` (from :func:`editproof.lm.forward.native_plan`) the model is built by
    the native forward and transformers is not imported, unless the tokenizer has to be
    loaded because its facts are not cached yet."""

    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    location, extra = _location(source)
    extra["local_files_only"] = not net
    started = time.perf_counter()
    if native is not None:
        model = _load_native(source, native, dev, torch_dtype)
    else:
        model = _load_transformers(source, location, extra, device, dev, torch_dtype, net)
    folder = _tokenizer_folder(source, location)
    facts = cached_facts(folder) if tokenizer and folder else None
    tok = None
    if tokenizer and (facts is None or native is None):  # transformers' forward loads it
        tok = _auto_tokenizer(source, location, extra, net=net)
        if facts is None:  # computed and stored once per tokenizer files and versions
            facts = facts_of(tok)
            if folder is not None:
                store_facts(folder, facts)
    if not dev.startswith("cuda"):
        model.to(dev)
    model.eval()
    model.requires_grad_(False)
    revision = _resolved_commit(source) if source.kind == "hub" else None
    return LoadedModel(
        source=source,
        model=model,
        tokenizer=tok,
        device=dev,
        dtype=str(torch_dtype).removeprefix("torch."),
        load_seconds=time.perf_counter() - started,
        resolved_revision=revision,
        forward="native" if native is not None else "transformers",
        tokenizer_facts=facts,
        tokenizer_location=(location, extra) if tokenizer else None,
    )


def _load_native(source: ModelSource, plan: NativePlan, dev: str, dtype: torch.dtype) -> Any:
    import torch

    from editproof.lm.native.build import build_random_native, load_native

    try:
        if source.kind == "random":
            return build_random_native(plan.config, source.seed or 0, dev, dtype)
        return load_native(plan.config, plan.files, dev, dtype)
    except torch.cuda.OutOfMemoryError:
        raise EvaluationError(f"out of GPU memory loading '{source.label}' on {dev}") from None
    except MemoryError:
        raise EvaluationError(f"out of host memory loading '{source.label}'") from None


def _load_transformers(
    source: ModelSource,
    location: str,
    extra: dict[str, Any],
    device: str,
    dev: str,
    torch_dtype: torch.dtype,
    net: bool,
) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": torch_dtype}
    target = dev  # where a random-init model is built: "cuda" = across the visible GPUs
    if dev.startswith("cuda"):
        # Stream weights straight to the card, no host copy. Plain "cuda" with several GPUs
        # visible (a suite worker's GPU group) shares the layers evenly over them, so each
        # keeps the same headroom for activations and undo copies.
        spread = device == "cuda" and torch.cuda.device_count() > 1
        kwargs["device_map"] = "balanced" if spread else dev
        target = "cuda" if spread else dev
    kwargs.update(extra)
    with network(net):
        try:
            if source.kind == "random":
                from editproof.lm.random_init import build_random

                assert source.path is not None
                return build_random(source.path, source.seed or 0, target, torch_dtype)
            return AutoModelForCausalLM.from_pretrained(location, **kwargs)
        except torch.cuda.OutOfMemoryError:
            raise EvaluationError(f"out of GPU memory loading '{source.label}' on {dev}") from None
        except MemoryError:
            raise EvaluationError(f"out of host memory loading '{source.label}'") from None
        except (ImportError, EvaluationError):
            raise  # a missing optional package is not a bad file; nor is a full GPU
        except Exception as exc:  # any failure reading a checkpoint is about that checkpoint
            raise _load_error(source, net, exc) from None


def _auto_tokenizer(source: ModelSource, location: str, extra: dict[str, Any], *, net: bool) -> Any:
    from transformers import AutoTokenizer

    with network(net):
        try:
            return AutoTokenizer.from_pretrained(location, **extra)
        except ImportError:
            raise
        except Exception as exc:
            raise _load_error(source, net, exc, part="tokenizer") from None


def _tokenizer_folder(source: ModelSource, location: str) -> Path | None:
    """The directory the tokenizer is read from, when its files can key the facts cache."""
    if source.kind in ("demo", "local", "random"):
        return Path(location)
    return None


def _resolved_commit(source: ModelSource) -> str | None:
    """The commit the hub cache resolved ``repo@revision`` to (pins what was evaluated)."""

    from huggingface_hub import try_to_load_from_cache

    assert source.repo_id is not None
    found = try_to_load_from_cache(source.repo_id, "config.json", revision=source.revision)
    if isinstance(found, str) and Path(found).parent.parent.name == "snapshots":
        return Path(found).parent.name
    return None


def _location(source: ModelSource) -> tuple[str, dict[str, Any]]:
    if source.kind == "demo":
        return str(demo_dir()), {}
    if source.kind == "gguf":
        assert source.path is not None
        return str(source.path.parent), {"gguf_file": source.path.name}
    if source.kind in ("local", "random"):
        assert source.path is not None
        return str(source.path), {}
    assert source.repo_id is not None
    extra: dict[str, Any] = {}
    if source.revision:
        extra["revision"] = source.revision
    return source.repo_id, extra


def _load_error(
    source: ModelSource, net: bool, exc: Exception, *, part: str = "model"
) -> Exception:
    """A typed error for a failed load: not cached/fetchable (hub), else a bad file."""
    text = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
    missing = isinstance(exc, OSError | ValueError | KeyError)
    if source.kind == "hub" and not net and missing:
        return NotFoundError(
            f"model '{source.label}' is not in the local Hugging Face cache "
            f"(HF_HOME/HF_HUB_CACHE); run once with --net 1 to download it ({text})"
        )
    if source.kind == "hub" and missing:
        return NotFoundError(f"could not fetch model '{source.label}': {text}")
    if part == "tokenizer":
        return InvalidInputError(f"cannot load the tokenizer from '{source.spec}': {text}")
    return InvalidInputError(
        f"cannot load model from '{source.spec}' ({_weights_file(source)}): "
        f"{type(exc).__name__}: {text}"
    )


def _weights_file(source: ModelSource) -> str:
    """The file a failed load most likely failed on: the weights (or their index)."""

    from editproof.lm.preflight import weights_entry

    if source.kind in ("gguf", "random"):
        return str(source.path)
    folder: Path | None = source.path
    if source.kind == "demo":
        folder = demo_dir()
    elif source.kind == "hub":
        from huggingface_hub import try_to_load_from_cache

        assert source.repo_id is not None
        found = try_to_load_from_cache(source.repo_id, "config.json", revision=source.revision)
        folder = Path(found).parent if isinstance(found, str) else None
    if folder is None:
        return source.label
    entry = weights_entry(folder)
    return str(entry if entry is not None else folder)
