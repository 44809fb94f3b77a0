"""Load a model (and its tokenizer) from a :class:`ModelSource`, offline unless allowed.

Devices and dtypes are chosen for speed with exactness where it is cheap: bf16 on CUDA,
fp32 on CPU (CPU bf16 matmuls are slow and would blur the batch-invariance guarantee).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from editproof.errors import EvaluationError, InvalidInputError, NotFoundError, UsageError
from editproof.lm._offline import network
from editproof.lm.demo import demo_dir
from editproof.lm.sources import ModelSource

if TYPE_CHECKING:
    import torch

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
    """A model on its device with the facts the report needs about how it was loaded."""

    source: ModelSource
    model: Any  # transformers.PreTrainedModel; Any keeps torch out of type-only imports
    tokenizer: Any | None
    device: str
    dtype: str
    load_seconds: float
    resolved_revision: str | None


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
) -> LoadedModel:
    """Load ``source`` onto ``device``. Without ``net`` nothing is ever downloaded."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    kwargs: dict[str, Any] = {"dtype": torch_dtype}
    target = dev  # where a random-init model is built: "cuda" = across the visible GPUs
    if dev.startswith("cuda"):
        # Stream weights straight to the card, no host copy. Plain "cuda" with several GPUs
        # visible (a suite worker's GPU group) shares the layers evenly over them, so each
        # keeps the same headroom for activations and undo copies.
        spread = device == "cuda" and torch.cuda.device_count() > 1
        kwargs["device_map"] = "balanced" if spread else dev
        target = "cuda" if spread else dev
    location, extra = _location(source)
    extra["local_files_only"] = not net
    kwargs.update(extra)
    started = time.perf_counter()
    with network(net):
        try:
            if source.kind == "random":
                from editproof.lm.random_init import build_random

                assert source.path is not None
                model = build_random(source.path, source.seed or 0, target, torch_dtype)
            else:
                model = AutoModelForCausalLM.from_pretrained(location, **kwargs)
        except torch.cuda.OutOfMemoryError:
            raise EvaluationError(f"out of GPU memory loading '{source.label}' on {dev}") from None
        except MemoryError:
            raise EvaluationError(f"out of host memory loading '{source.label}'") from None
        except (ImportError, EvaluationError):
            raise  # a missing optional package is not a bad file; nor is a full GPU
        except Exception as exc:  # any failure reading a checkpoint is about that checkpoint
            raise _load_error(source, net, exc) from None
        try:
            tok = AutoTokenizer.from_pretrained(location, **extra) if tokenizer else None
        except ImportError:
            raise
        except Exception as exc:
            raise _load_error(source, net, exc, part="tokenizer") from None
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
    )


def _resolved_commit(source: ModelSource) -> str | None:
    """The commit the hub cache resolved ``repo@revision`` to (pins what was evaluated)."""
    from pathlib import Path

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
    from pathlib import Path

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
