"""What one evaluation is asked to do (:class:`EvaluationConfig`) and the checks that need no
model: flags, tier, spec, tuned params, and both sources' files. ``evaluation`` re-exports
every name here.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from editproof.data import AUTO_PROVIDER, Corpus, load_corpus
from editproof.edits import parse_spec, resolve_clean
from editproof.edits.tuned import TunedParams, load_tuned, shipped_tuned
from editproof.errors import NotFoundError, UsageError
from editproof.lm import parse_source, preflight_source
from editproof.lm.forward import check_forward_name
from editproof.lm.sources import ModelSource
from editproof.policy import TierPolicy, load_tier

DEFAULT_SEQ_LEN = 512
DEFAULT_WINDOWS = 64
# The embedded demo runs on two CPU cores in minutes: shorter windows, and a token floor
# that is relaxed (and recorded as relaxed) because 64+64 windows cannot reach 50k tokens.
DEMO_SEQ_LEN = 256
DEMO_RELAX_REASON = (
    "embedded demo model: 64+64 short windows on CPU cannot reach the tier's token floor"
)
# Environment variable the seed document names for the tuned edit params file.
TUNED_ENV = "PACK_TUNED_EDIT_PARAMS_FILE"


@dataclass(frozen=True)
class EvaluationConfig:
    baseline: str
    subject: str | None = None
    edit: str | None = None
    tuned_params: str | None = None
    tier: str = "balanced"
    provider: str = "auto"
    data_path: str | None = None
    data_field: str = "text"
    dataset: str | None = None
    dataset_config: str | None = None
    split: str = "validation"
    seq_len: int | None = None
    n_preview: int = DEFAULT_WINDOWS
    n_final: int = DEFAULT_WINDOWS
    batch_size: int | None = None  # None: chosen from the model and device once loaded
    device: str = "auto"
    dtype: str = "auto"
    net: bool = False
    seed: int = 42
    relax_token_floor: bool | None = None  # None: relax only for the embedded demo model
    edit_label: str | None = None
    guards: bool = True
    # Which forward runs the models: auto, native or transformers (lm/forward.py).
    forward: str = "auto"
    # A resolved policy (e.g. a tier with a calibrated preset merged, see editproof.calibration)
    # replaces the packaged ``tier``; ``policy_source`` says where it came from.
    policy: TierPolicy | None = None
    policy_source: str | None = None
    command: list[str] = field(default_factory=list)


def model_key(source: ModelSource) -> str:
    """The id a tuned-params file uses for a model: hub id, ``demo``, or the dir/file name."""
    if source.kind == "hub":
        return source.repo_id or source.spec
    if source.kind == "demo":
        return "demo"
    assert source.path is not None
    return source.path.stem if source.kind == "gguf" else source.path.name


def tuned_params_for(path: str | None) -> TunedParams:
    """``--tuned-params``, else ``$PACK_TUNED_EDIT_PARAMS_FILE``, else the shipped defaults."""
    chosen = path or os.environ.get(TUNED_ENV)
    return load_tuned(chosen) if chosen else shipped_tuned()


def resolve_tier(config: EvaluationConfig) -> TierPolicy:
    """``config.policy`` when given, else the packaged tier named ``config.tier``."""
    return config.policy if config.policy is not None else load_tier(config.tier)


def default_seq_len(demo: bool) -> int:
    """Tokens per window when ``--seq-len`` is not given."""
    return DEMO_SEQ_LEN if demo else DEFAULT_SEQ_LEN


def check_config(config: EvaluationConfig) -> None:
    """Fast checks of everything that needs no model: flags, tier, spec, and both sources'
    files (:func:`~editproof.lm.preflight_source`: config, weights, safetensors headers)."""
    if (config.subject is None) == (config.edit is None):
        raise UsageError("give exactly one of --subject (a checkpoint) or --edit (a spec)")
    if config.edit is not None:
        spec = parse_spec(config.edit)
    else:
        assert config.subject is not None
        parse_source(config.subject)
    check_baseline_side(config)
    if config.edit is not None and spec.clean:
        # The tuned entry needs no model; only its layer=last waits for the load.
        tuned = tuned_params_for(config.tuned_params)
        resolve_clean(spec, model_key(parse_source(config.baseline)), tuned)
    if config.subject is not None:
        preflight_source(config.subject, net=config.net)


def check_baseline_side(config: EvaluationConfig) -> None:
    """What an :class:`Evaluator` needs before loading anything (it judges subjects later)."""
    parse_source(config.baseline)
    check_forward_name(config.forward)
    resolve_tier(config)
    if config.seq_len is not None and config.seq_len < 2:
        raise UsageError(
            f"--seq-len must be at least 2 (one input and one target token), got {config.seq_len}"
        )
    if config.batch_size is not None and config.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {config.batch_size}")
    if config.n_preview < 1 or config.n_final < 1:
        raise UsageError(
            f"window counts must be at least 1, got {config.n_preview}:{config.n_final}"
        )
    if config.tuned_params is not None and not Path(config.tuned_params).is_file():
        raise NotFoundError(f"tuned params file not found: {config.tuned_params}")
    preflight_source(config.baseline, net=config.net)


def text_provider(config: EvaluationConfig) -> str:
    """The provider ``auto`` stands for: with ``--data``, ``jsonl`` for a ``.jsonl`` file
    and ``text`` otherwise; with ``--dataset``, ``hf``; else ``pydoc`` for the embedded demo
    model (its shipped presets were calibrated on that text) and ``stdlib`` for any other
    model (pydoc's 212 windows of 512 tokens are fewer than a 200+200 run needs)."""
    if config.provider != AUTO_PROVIDER:
        return config.provider
    if config.data_path is not None:
        return "jsonl" if config.data_path.lower().endswith(".jsonl") else "text"
    if config.dataset is not None:
        return "hf"
    return "pydoc" if parse_source(config.baseline).kind == "demo" else "stdlib"


# Corpora being read on a thread, by what names them (see prefetch_text).
_PREFETCH: dict[tuple[object, ...], Future[Corpus]] = {}
_PREFETCH_LOCK = threading.Lock()
# Providers whose loading is plain file reading or a subprocess: safe beside other imports.
_PREFETCHABLE = frozenset({"pydoc", "stdlib", "text", "jsonl"})


def _text_key(config: EvaluationConfig) -> tuple[object, ...]:
    return (
        text_provider(config),
        config.data_path,
        config.data_field,
        config.dataset,
        config.dataset_config,
        config.split,
        config.net,
    )


def prefetch_text(config: EvaluationConfig) -> None:
    """Start reading the corpus on a thread (beside the torch import, say); the next
    :func:`load_text` of the same text takes the result, or its error, from there."""
    key = _text_key(config)
    if key[0] not in _PREFETCHABLE:
        return
    with _PREFETCH_LOCK:
        if key in _PREFETCH:
            return
        future: Future[Corpus] = Future()
        _PREFETCH[key] = future

    def run() -> None:
        try:
            future.set_result(_read_text(config))
        except BaseException as exc:  # handed to the load_text that takes it
            future.set_exception(exc)

    threading.Thread(target=run, name="editproof-text", daemon=True).start()


def load_text(config: EvaluationConfig) -> Corpus:
    """The corpus ``config`` names (provider, file or dataset), offline unless ``net``."""
    with _PREFETCH_LOCK:
        future = _PREFETCH.pop(_text_key(config), None)
    if future is not None:
        return future.result()
    return _read_text(config)


def _read_text(config: EvaluationConfig) -> Corpus:
    return load_corpus(
        text_provider(config),
        path=config.data_path,
        field=config.data_field,
        dataset=config.dataset,
        config=config.dataset_config,
        split=config.split,
        net=config.net,
    )
