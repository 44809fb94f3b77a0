"""One baseline-vs-subject evaluation, composed from the layers below.

load baseline -> windows -> baseline NLL -> subject (loaded, or the baseline itself) ->
subject NLL -> derived numbers and gates -> :class:`EvaluationReport`.
Both the CLI and (later) the suite worker call :func:`evaluate`.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from editproof import __version__
from editproof.data import WindowPlan, load_corpus, make_windows, tokenize_corpus
from editproof.errors import InvalidInputError, UsageError
from editproof.lm import LoadedModel, describe, load_model, parse_source, weight_digest
from editproof.lm.sources import ModelSource
from editproof.measure import WindowNLL, measure_nll
from editproof.policy import TierPolicy, load_tier
from editproof.report import derive
from editproof.report.model import (
    Arm,
    DatasetInfo,
    EditInfo,
    EvaluationReport,
    GuardsSection,
    ModelInfo,
    PolicyInfo,
    Provenance,
    TelemetryInfo,
    ToolInfo,
    WindowSet,
)

DEFAULT_SEQ_LEN = 512
DEFAULT_WINDOWS = 64
# The embedded demo runs on two CPU cores in minutes: shorter windows, and a token floor
# that is relaxed (and recorded as relaxed) because 64+64 windows cannot reach 50k tokens.
DEMO_SEQ_LEN = 256
# Offset between the window seed and the bootstrap seed, so the two streams never coincide.
BOOTSTRAP_SEED_OFFSET = 503

Progress = Callable[[str], None]


@dataclass(frozen=True)
class EvaluationConfig:
    baseline: str
    subject: str
    tier: str = "balanced"
    provider: str = "pydoc"
    data_path: str | None = None
    data_field: str = "text"
    dataset: str | None = None
    dataset_config: str | None = None
    split: str = "validation"
    seq_len: int | None = None
    n_preview: int = DEFAULT_WINDOWS
    n_final: int = DEFAULT_WINDOWS
    batch_size: int = 8
    device: str = "auto"
    dtype: str = "auto"
    net: bool = False
    seed: int = 42
    relax_token_floor: bool | None = None  # None: relax only for the embedded demo model
    edit_label: str | None = None
    command: list[str] = field(default_factory=list)


@dataclass
class _ArmRun:
    loaded: LoadedModel
    info: ModelInfo
    nll: WindowNLL


def evaluate(config: EvaluationConfig, progress: Progress | None = None) -> EvaluationReport:
    """Run the whole evaluation and return the report (nothing is written here)."""
    say = progress or (lambda _msg: None)
    timings: dict[str, float] = {}
    started = time.perf_counter()

    # Cheap checks first, so a typo fails before minutes of model loading.
    base_src = parse_source(config.baseline)
    subj_src = parse_source(config.subject)
    tier = load_tier(config.tier)
    if config.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {config.batch_size}")
    seq_len = config.seq_len or (DEMO_SEQ_LEN if base_src.kind == "demo" else DEFAULT_SEQ_LEN)
    if seq_len < 2:
        raise UsageError(f"--seq-len must be at least 2, got {seq_len}")
    relax = config.relax_token_floor
    if relax is None:
        relax = base_src.kind == "demo"
    corpus = load_corpus(
        config.provider,
        path=config.data_path,
        field=config.data_field,
        dataset=config.dataset,
        config=config.dataset_config,
        split=config.split,
        net=config.net,
    )

    say(f"loading baseline {base_src.label}")
    base_loaded = load_model(base_src, device=config.device, dtype=config.dtype, net=config.net)
    timings["load_baseline"] = base_loaded.load_seconds
    tok = base_loaded.tokenizer
    if tok is None:
        raise InvalidInputError(f"baseline '{base_src.spec}' has no tokenizer")

    t0 = time.perf_counter()
    stream = tokenize_corpus(
        corpus,
        lambda s: list(tok.encode(s, add_special_tokens=False)),
        separator_id=tok.eos_token_id,
    )
    plan = make_windows(
        stream,
        seq_len=seq_len,
        n_preview=config.n_preview,
        n_final=config.n_final,
        seed=config.seed,
    )
    timings["windows"] = time.perf_counter() - t0
    windows = [list(w.tokens) for w in plan.all_windows()]

    say(f"baseline: {len(windows)} windows x {seq_len} tokens")
    base = _measure_arm(base_loaded, windows, config.batch_size)
    timings["measure_baseline"] = base.nll.telemetry.seconds

    same = subj_src == base_src
    if same:
        # Identical source: measure the already-loaded weights again instead of loading a
        # second copy. The subject's digest is computed independently all the same.
        subj_loaded = base_loaded
    else:
        del base_loaded  # free the baseline before the subject loads (peak memory)
        say(f"loading subject {subj_src.label}")
        subj_loaded = load_model(
            subj_src, device=config.device, dtype=config.dtype, net=config.net, tokenizer=False
        )
        timings["load_subject"] = subj_loaded.load_seconds
        _check_vocab(subj_loaded, stream)
    say(f"subject: {len(windows)} windows x {seq_len} tokens")
    subj = _measure_arm(subj_loaded, windows, config.batch_size)
    timings["measure_subject"] = subj.nll.telemetry.seconds

    t0 = time.perf_counter()
    report = _assemble(
        config,
        tier,
        plan,
        corpus_info=(corpus.provider, corpus.source, corpus.sha256, corpus.n_chars),
        tokenizer_sha256=tokenizer_digest(tok),
        separator_id=tok.eos_token_id,
        base=base,
        subj=subj,
        same_source=same,
        relax=relax,
        timings=timings,
    )
    timings["derive"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - started
    provenance = report.provenance.model_copy(update={"timings": dict(timings)})
    return report.model_copy(update={"provenance": provenance})


def tokenizer_digest(tok: Any) -> str:
    """sha256 (16 hex) of the tokenizer's vocabulary and special tokens."""
    vocab = sorted(tok.get_vocab().items())
    special = sorted((str(k), str(v)) for k, v in tok.special_tokens_map.items())
    blob = json.dumps({"vocab": vocab, "special": special}, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _check_vocab(loaded: LoadedModel, stream: Any) -> None:
    emb = loaded.model.get_input_embeddings()
    rows = int(emb.weight.shape[0]) if emb is not None else None
    top = int(stream.max()) if len(stream) else 0
    if rows is not None and top >= rows:
        raise InvalidInputError(
            f"subject '{loaded.source.spec}' has {rows} token embeddings but the baseline "
            f"tokenizer produces id {top}; the two models do not share a vocabulary"
        )


def _measure_arm(loaded: LoadedModel, windows: list[list[int]], batch_size: int) -> _ArmRun:
    nll = measure_nll(loaded.model, windows, batch_size=batch_size, device=loaded.device)
    return _ArmRun(loaded=loaded, info=_model_info(loaded), nll=nll)


def _model_info(loaded: LoadedModel) -> ModelInfo:
    anatomy = describe(loaded.model)
    digest = weight_digest(loaded.model)
    src: ModelSource = loaded.source
    return ModelInfo(
        spec=src.spec,
        kind=src.kind,
        label=src.label,
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
        load_seconds=loaded.load_seconds,
    )


def _split(plan: WindowPlan, nll: WindowNLL) -> tuple[WindowSet, WindowSet]:
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


def _arm(plan: WindowPlan, run: _ArmRun) -> Arm:
    preview, final = _split(plan, run.nll)
    return Arm(
        model=run.info,
        preview=preview,
        final=final,
        summary=derive.arm_summary(preview, final),
        telemetry=TelemetryInfo(**run.nll.telemetry.to_dict()),
    )


def _assemble(
    config: EvaluationConfig,
    tier: TierPolicy,
    plan: WindowPlan,
    *,
    corpus_info: tuple[str, dict[str, str], str, int],
    tokenizer_sha256: str,
    separator_id: int | None,
    base: _ArmRun,
    subj: _ArmRun,
    same_source: bool,
    relax: bool,
    timings: dict[str, float],
) -> EvaluationReport:
    base_arm, subj_arm = _arm(plan, base), _arm(plan, subj)
    boot_seed = config.seed + BOOTSTRAP_SEED_OFFSET
    pm = derive.primary_metric(base_arm.final, subj_arm.final, tier, seed=boot_seed)
    dr = derive.drift(base_arm.summary, subj_arm.summary, tier)
    gate_list = derive.gates(
        pm,
        dr,
        subj_arm.summary,
        tier,
        tokens_available=plan.tokens_available,
        floor_relaxed=relax,
    )
    guards = GuardsSection()
    provider, source, corpus_sha, n_chars = corpus_info
    label = config.edit_label or ("noop" if same_source else "custom")
    return EvaluationReport(
        run_id=uuid.uuid4().hex[:12],
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        tool=ToolInfo(version=__version__),
        status=derive.overall_status(gate_list, guards),
        policy=PolicyInfo(
            tier=tier,
            digest=tier.digest(),
            token_floor_relaxed=relax,
            relax_reason=(
                "embedded demo model: 64+64 short windows on CPU cannot reach the "
                "tier's token floor"
                if relax and config.relax_token_floor is None
                else ("relaxed by --relax-token-floor" if relax else None)
            ),
        ),
        dataset=DatasetInfo(
            provider=provider,
            source=source,
            corpus_sha256=corpus_sha,
            n_chars=n_chars,
            tokenizer_sha256=tokenizer_sha256,
            separator_id=separator_id,
            seq_len=plan.seq_len,
            seed=plan.seed,
            n_preview=len(plan.preview),
            n_final=len(plan.final),
            candidates=plan.candidates,
            duplicates=plan.duplicates,
            tokens_available=plan.tokens_available,
            plan_digest=plan.digest,
            difficulty={
                "preview_mean": plan.stats.preview_mean,
                "final_mean": plan.stats.final_mean,
                "gap": plan.stats.gap,
                "candidate_std": plan.stats.candidate_std,
            },
        ),
        edit=EditInfo(label=label, label_source="user" if config.edit_label else "inferred"),
        baseline=base_arm,
        subject=subj_arm,
        primary_metric=pm,
        drift=dr,
        gates=gate_list,
        guards=guards,
        provenance=Provenance(
            seeds={"windows": config.seed, "bootstrap": boot_seed},
            versions=_versions(),
            device=subj.loaded.device,
            device_name=_device_name(subj.loaded.device),
            dtype=subj.loaded.dtype,
            batch_size=config.batch_size,
            deterministic=_deterministic(),
            timings=timings,
            command=list(config.command),
        ),
    )


def _versions() -> dict[str, str]:
    import numpy
    import torch
    import transformers

    return {
        "editproof": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": numpy.__version__,
        "cuda": str(torch.version.cuda),
    }


def _device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return str(torch.cuda.get_device_name(torch.device(device)))
    return platform.processor() or platform.machine()


def _deterministic() -> bool:
    import torch

    return bool(torch.are_deterministic_algorithms_enabled())
