"""Facts an evaluation records: model identity, window sets, dataset, environment.

Split from :mod:`editproof.evaluation` so the composition stays readable; everything here
is a small pure-ish helper over a loaded model, a window plan or the running process.
"""

from __future__ import annotations

import platform
import sys
import time
from typing import Any

from pydantic import ValidationError

from editproof import __version__
from editproof.data import WindowPlan
from editproof.edits import EditRecord
from editproof.lm import LoadedModel, describe, weight_digest
from editproof.lm.digest import WeightDigest
from editproof.measure import WindowNLL
from editproof.report.model import DatasetInfo, ModelInfo, WindowSet


def dataset_info(corpus: Any, plan: WindowPlan, tok_sha: str, sep: int | None) -> DatasetInfo:
    return DatasetInfo(
        provider=corpus.provider,
        source=corpus.source,
        corpus_sha256=corpus.sha256,
        n_chars=corpus.n_chars,
        tokenizer_sha256=tok_sha,
        separator_id=sep,
        **plan_facts(plan),
    )


def plan_facts(plan: WindowPlan) -> dict[str, Any]:
    """The DatasetInfo fields a window plan decides (the rest come from corpus and tokenizer)."""
    return {
        "seq_len": plan.seq_len,
        "seed": plan.seed,
        "n_preview": len(plan.preview),
        "n_final": len(plan.final),
        "candidates": plan.candidates,
        "duplicates": plan.duplicates,
        "tokens_available": plan.tokens_available,
        "plan_digest": plan.digest,
        "difficulty": {
            "preview_mean": plan.stats.preview_mean,
            "final_mean": plan.stats.final_mean,
            "gap": plan.stats.gap,
            "candidate_std": plan.stats.candidate_std,
        },
    }


def model_info(
    loaded: LoadedModel,
    digest: WeightDigest,
    *,
    spec: str | None = None,
    kind: str | None = None,
    load_seconds: float | None = None,
) -> ModelInfo:
    anatomy = describe(loaded.model)
    src = loaded.source
    return ModelInfo(
        spec=spec or src.spec,
        kind=kind or src.kind,
        label=spec or src.label,
        resolved_revision=loaded.resolved_revision,
        architecture=anatomy.architecture,
        model_type=anatomy.model_type,
        n_params=anatomy.n_params,
        n_layers=anatomy.n_layers,
        vocab_size=anatomy.vocab_size,
        weight_sha256=digest.sha256,
        weight_tensors=digest.n_tensors,
        weight_bytes=digest.n_bytes,
        tied=[list(g) for g in anatomy.tied],
        dtype=loaded.dtype,
        device=loaded.device,
        load_seconds=loaded.load_seconds if load_seconds is None else load_seconds,
        forward=loaded.forward,
    )


def split_windows(plan: WindowPlan, nll: WindowNLL) -> tuple[WindowSet, WindowSet]:
    n_prev = len(plan.preview)
    values = [float(v) if v == v and abs(v) != float("inf") else None for v in nll.mean_nll]
    counts = [int(c) for c in nll.token_counts]

    def make(ws: Any, lo: int, hi: int) -> WindowSet:
        return WindowSet(
            window_ids=[w.id for w in ws],
            token_hashes=[w.token_hash for w in ws],
            token_counts=counts[lo:hi],
            mean_nll=values[lo:hi],
        )

    return make(plan.preview, 0, n_prev), make(plan.final, n_prev, len(values))


def timed_digest(model: Any) -> tuple[WeightDigest, float]:
    t0 = time.perf_counter()
    return weight_digest(model), time.perf_counter() - t0


def claimed_record(raw: object) -> dict[str, Any] | None:
    """A checkpoint's claimed EditRecord, kept only if it is a well-formed one."""
    try:
        return EditRecord.model_validate(raw).model_dump(mode="json")
    except ValidationError:
        return None


def empty_cache() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def versions() -> dict[str, str]:
    from importlib import metadata

    import numpy
    import torch

    try:  # from the installed metadata: importing transformers costs seconds
        transformers = metadata.version("transformers")
    except metadata.PackageNotFoundError:
        transformers = "absent"
    return {
        "editproof": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "transformers": transformers,
        "numpy": numpy.__version__,
        "cuda": str(torch.version.cuda),
    }


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return str(torch.cuda.get_device_name(torch.device(device)))
    return platform.processor() or platform.machine()


def deterministic() -> bool:
    import torch

    return bool(torch.are_deterministic_algorithms_enabled())
