"""Baseline-vs-subject evaluation, composed from the layers below.

:class:`Evaluator` loads the baseline once, cuts the windows and measures the baseline once;
it then judges any number of subjects: another checkpoint (:meth:`Evaluator.judge_source`)
or an edit applied in memory and restored exactly afterwards (:meth:`Evaluator.judge_edit`).
The CLI, ``editproof tune`` and (later) the suite worker all go through it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from editproof import facts as _facts
from editproof.data import load_corpus, make_windows, tokenize_corpus
from editproof.edits import EditSpec, applied, parse_spec, resolve_clean
from editproof.edits.tuned import TunedParams, load_tuned, resolve_probe, shipped_tuned
from editproof.errors import EvaluationError, InvalidInputError, NotFoundError, UsageError
from editproof.guards.base import MeasureContext, Signature
from editproof.guards.chain import judge_all, measure_all
from editproof.lm import LoadedModel, describe, load_model, parse_source, weight_digest
from editproof.lm.digest import WeightDigest, aliases, digest_from_lines, fingerprints
from editproof.lm.save import read_edit_metadata
from editproof.lm.sources import ModelSource
from editproof.measure import WindowNLL, measure_nll
from editproof.policy import TierPolicy, load_tier
from editproof.report.build import build_report, make_arm
from editproof.report.model import (
    Arm,
    EditInfo,
    EvaluationReport,
    GuardsSection,
    ModelInfo,
    Provenance,
    TelemetryInfo,
)

DEFAULT_SEQ_LEN = 512
DEFAULT_WINDOWS = 64
# The embedded demo runs on two CPU cores in minutes: shorter windows, and a token floor
# that is relaxed (and recorded as relaxed) because 64+64 windows cannot reach 50k tokens.
DEMO_SEQ_LEN = 256
DEMO_RELAX_REASON = (
    "embedded demo model: 64+64 short windows on CPU cannot reach the tier's token floor"
)
# Offset between the window seed and the bootstrap seed, so the two streams never coincide.
BOOTSTRAP_SEED_OFFSET = 503
# Faults that change the model's layout: no guard may reuse baseline numbers for them.
_STRUCTURAL = frozenset({"shape_mismatch", "missing_tensors", "weight_tying_break"})
# Environment variable the seed document names for the tuned edit params file.
TUNED_ENV = "PACK_TUNED_EDIT_PARAMS_FILE"

Progress = Callable[[str], None]


@dataclass(frozen=True)
class EvaluationConfig:
    baseline: str
    subject: str | None = None
    edit: str | None = None
    tuned_params: str | None = None
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
    guards: bool = True
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


class Evaluator:
    """The baseline, measured once; subjects are judged against it one at a time."""

    def __init__(self, config: EvaluationConfig, progress: Progress | None = None) -> None:
        self.config = config
        self._say = progress or (lambda _msg: None)
        # Cheap checks first, so a typo fails before minutes of model loading.
        _check_baseline_side(config)
        self.base_src = parse_source(config.baseline)
        self.tier = resolve_tier(config)
        demo = self.base_src.kind == "demo"
        seq_len = config.seq_len or (DEMO_SEQ_LEN if demo else DEFAULT_SEQ_LEN)
        if seq_len < 2:
            raise UsageError(f"--seq-len must be at least 2, got {seq_len}")
        relax = demo if config.relax_token_floor is None else config.relax_token_floor
        self.relax_reason = (
            None
            if not relax
            else DEMO_RELAX_REASON
            if config.relax_token_floor is None
            else "relaxed by --relax-token-floor"
        )
        corpus = load_corpus(
            config.provider,
            path=config.data_path,
            field=config.data_field,
            dataset=config.dataset,
            config=config.dataset_config,
            split=config.split,
            net=config.net,
        )
        self.timings: dict[str, float] = {}

        self._say(f"loading baseline {self.base_src.label}")
        self._model: LoadedModel | None = load_model(
            self.base_src, device=config.device, dtype=config.dtype, net=config.net
        )
        self.timings["load_baseline"] = self._model.load_seconds
        tok = self._model.tokenizer
        if tok is None:
            raise InvalidInputError(f"baseline '{self.base_src.spec}' has no tokenizer")
        t0 = time.perf_counter()
        self.stream = tokenize_corpus(
            corpus,
            lambda s: list(tok.encode(s, add_special_tokens=False)),
            separator_id=tok.eos_token_id,
        )
        self.plan = make_windows(
            self.stream,
            seq_len=seq_len,
            n_preview=config.n_preview,
            n_final=config.n_final,
            seed=config.seed,
        )
        self.timings["windows"] = time.perf_counter() - t0
        self.windows = [list(w.tokens) for w in self.plan.all_windows()]
        self.dataset = _facts.dataset_info(
            corpus, self.plan, _facts.tokenizer_digest(tok), tok.eos_token_id
        )

        # The sha256 pass (CPU and copy engine) overlaps the baseline measurement (GPU).
        self.base_fingerprints = fingerprints(self._model.model)
        with ThreadPoolExecutor(max_workers=1) as pool:
            digest_job = pool.submit(_facts.timed_digest, self._model.model)
            self._say(f"baseline: {len(self.windows)} windows x {seq_len} tokens")
            nll = self._measure(self._model)
            self.timings["measure_baseline"] = nll.telemetry.seconds
            t0 = time.perf_counter()
            self.base_digest, self.timings["digest_baseline"] = digest_job.result()
            self.timings["digest_baseline_wait"] = time.perf_counter() - t0
        self.baseline = self._arm(_facts.model_info(self._model, self.base_digest), nll)
        self.guard_ctx = MeasureContext(
            device=self._model.device,
            windows=self.windows,
            seed=config.seed,
            batch_size=config.batch_size,
        )
        self.base_signatures: dict[str, Signature] = {}
        if config.guards:
            self._say("guards: measuring the baseline")
            t0 = time.perf_counter()
            self.base_signatures = measure_all(self._model.model, self.guard_ctx, self.tier.guards)
            self.timings["guards_baseline"] = time.perf_counter() - t0

    @property
    def model(self) -> LoadedModel:
        if self._model is None:
            raise EvaluationError("the baseline model was released; create a new Evaluator")
        return self._model

    def release_baseline(self) -> None:
        """Drop the baseline weights (its measurements stay) to make room for a subject."""
        self._model = None
        _facts.empty_cache()

    def judge_source(self, spec: str, *, label: str | None = None) -> EvaluationReport:
        """Judge a separately stored subject (a ``custom`` checkpoint, or the same source)."""
        src = parse_source(spec)
        timings = dict(self.timings)
        if src.identity == self.base_src.identity and self._model is not None:
            # Identical source: measure the loaded weights again rather than load a second
            # copy; the subject's digest is still computed on its own.
            loaded = self._model
        else:
            self._say(f"loading subject {src.label}")
            loaded = load_model(
                src,
                device=self.config.device,
                dtype=self.config.dtype,
                net=self.config.net,
                tokenizer=False,
            )
            timings["load_subject"] = loaded.load_seconds
            self._check_vocab(loaded)
        self._say(f"subject: {len(self.windows)} windows")
        nll = self._measure(loaded)
        timings["measure_subject"] = nll.telemetry.seconds
        t0 = time.perf_counter()
        info = _facts.model_info(loaded, weight_digest(loaded.model))
        timings["digest_subject"] = time.perf_counter() - t0
        guards = self._judge_guards(loaded, None, timings, nll=nll)
        same = src.identity == self.base_src.identity
        meta = read_edit_metadata(src.path) if src.kind == "local" and src.path else None
        claimed = meta.get("edit", {}) if meta else {}
        edit = EditInfo(
            label=label or ("noop" if same else "custom"),
            label_source="user" if label else "inferred",
            spec=claimed.get("spec"),
            record=_facts.claimed_record(claimed.get("record")),
            tuned_source=claimed.get("tuned_source"),
            claimed_digest_match=(meta.get("weight_sha256") == info.weight_sha256)
            if meta
            else None,
        )
        return self._report(self._arm(info, nll), edit, timings, guards)

    def judge_edit(
        self, edit: str | EditSpec, *, label: str | None = None, tuned: TunedParams | None = None
    ) -> EvaluationReport:
        """Apply ``edit`` to the baseline in memory, judge it, and restore exact weights."""
        spec = parse_spec(edit) if isinstance(edit, str) else edit
        loaded = self.model
        tuned_source = None
        if spec.clean:
            tuned = tuned or tuned_params_for(self.config.tuned_params)
            tuned_source = tuned.source
            spec = resolve_clean(
                spec, model_key(self.base_src), tuned, n_layers=describe(loaded.model).n_layers
            )
        elif spec.kind == "probe":
            # The model's calibrated probe strength fills what the spec did not set.
            tuned = tuned or tuned_params_for(self.config.tuned_params)
            resolved = resolve_probe(spec, model_key(self.base_src), tuned)
            if resolved is not spec:
                spec, tuned_source = resolved, tuned.source
        timings = dict(self.timings)
        self._say(f"subject: baseline + {spec.text}")
        with applied(loaded.model, spec) as record:
            timings["edit_apply"] = record.seconds
            nll = self._measure(loaded)
            timings["measure_subject"] = nll.telemetry.seconds
            t0 = time.perf_counter()
            digest = self._edited_digest(loaded, record.tensors, structural=spec.kind != "edit")
            timings["digest_subject"] = time.perf_counter() - t0
            info = _facts.model_info(
                loaded,
                digest,
                spec=f"{self.base_src.spec} + {spec.text}",
                kind="edited",
                load_seconds=0.0,
            )
            # Weight edits and tensor-level faults leave every other tensor bit-identical;
            # guards may reuse the baseline's numbers for those. Layout changes may not.
            touched = (
                None
                if spec.type in _STRUCTURAL
                else frozenset(aliases(loaded.model, record.tensors))
            )
            guards = self._judge_guards(loaded, spec.type, timings, touched, nll=nll)
        t0 = time.perf_counter()
        self._verify_restore(loaded, record.tensors)
        timings["restore_verify"] = time.perf_counter() - t0
        info_edit = EditInfo(
            label=label or spec.label,
            label_source="user" if label else "inferred",
            spec=spec.text,
            record=record.model_dump(mode="json"),
            tuned_source=tuned_source,
            restore_verified=True,
        )
        return self._report(self._arm(info, nll), info_edit, timings, guards)

    # -- internals -----------------------------------------------------------------------

    def _measure(self, loaded: LoadedModel) -> WindowNLL:
        return measure_nll(
            loaded.model, self.windows, batch_size=self.config.batch_size, device=loaded.device
        )

    def _arm(self, info: ModelInfo, nll: WindowNLL) -> Arm:
        preview, final = _facts.split_windows(self.plan, nll)
        return make_arm(info, preview, final, TelemetryInfo(**nll.telemetry.to_dict()))

    def _edited_digest(
        self, loaded: LoadedModel, touched: list[str], *, structural: bool
    ) -> WeightDigest:
        """Digest of the edited model: rehash only touched tensors unless shapes moved."""
        state = loaded.model.state_dict()
        same_layout = not structural and set(state) == set(self.base_digest.tensors)
        if not same_layout:
            return weight_digest(loaded.model)
        names = aliases(loaded.model, touched)
        part = weight_digest(loaded.model, names)
        lines = {**self.base_digest.tensors, **part.tensors}
        return WeightDigest(
            sha256=digest_from_lines(lines),
            tensors=lines,
            n_tensors=len(lines),
            n_bytes=self.base_digest.n_bytes,
        )

    def _verify_restore(self, loaded: LoadedModel, touched: list[str]) -> None:
        """Touched tensors: sha256 equal to the baseline's; every tensor: same fingerprint."""
        after = fingerprints(loaded.model)
        changed = sorted(
            set(after) ^ set(self.base_fingerprints)
            | {k for k in after if self.base_fingerprints.get(k) != after[k]}
        )
        names = [n for n in aliases(loaded.model, touched) if n in self.base_digest.tensors]
        rehashed = weight_digest(loaded.model, names).tensors
        changed += [n for n in names if rehashed[n] != self.base_digest.tensors[n]]
        if changed:
            raise EvaluationError(
                f"restoring the baseline after the edit left {len(changed)} tensor(s) "
                f"different (first: {changed[0]}); results after this point are unsafe"
            )

    def _check_vocab(self, loaded: LoadedModel) -> None:
        emb = loaded.model.get_input_embeddings()
        rows = int(emb.weight.shape[0]) if emb is not None else None
        top = int(self.stream.max()) if len(self.stream) else 0
        if rows is not None and top >= rows:
            raise InvalidInputError(
                f"subject '{loaded.source.spec}' has {rows} token embeddings but the baseline "
                f"tokenizer produces id {top}; the two models do not share a vocabulary"
            )

    def _judge_guards(
        self,
        loaded: LoadedModel,
        probe: str | None,
        timings: dict[str, float],
        touched: frozenset[str] | None = None,
        *,
        nll: WindowNLL | None = None,
    ) -> GuardsSection:
        if not self.base_signatures:
            return GuardsSection()
        self._say("guards: judging the subject")
        t0 = time.perf_counter()
        ctx = self.guard_ctx.model_copy(
            update={
                "device": loaded.device,
                "touched": touched,
                "baseline": self.base_signatures,
                "subject_nll": nll,  # the live subject's, on self.windows in order
            }
        )
        section = judge_all(loaded.model, ctx, self.tier.guards, self.base_signatures, probe=probe)
        timings["guards_subject"] = time.perf_counter() - t0
        return section

    def _report(
        self, subject: Arm, edit: EditInfo, timings: dict[str, float], guards: GuardsSection
    ) -> EvaluationReport:
        device = subject.model.device
        provenance = Provenance(
            seeds={
                "windows": self.config.seed,
                "bootstrap": self.config.seed + BOOTSTRAP_SEED_OFFSET,
            },
            versions=_facts.versions(),
            device=device,
            device_name=_facts.device_name(device),
            dtype=subject.model.dtype,
            batch_size=self.config.batch_size,
            deterministic=_facts.deterministic(),
            timings=timings,
            command=list(self.config.command),
        )
        t0 = time.perf_counter()
        report = build_report(
            tier=self.tier,
            dataset=self.dataset,
            baseline=self.baseline,
            subject=subject,
            edit=edit,
            provenance=provenance,
            relax_reason=self.relax_reason,
            policy_source=self.config.policy_source,
            guards=guards,
        )
        timings["derive"] = time.perf_counter() - t0
        return report.model_copy(
            update={"provenance": provenance.model_copy(update={"timings": timings})}
        )


def resolve_tier(config: EvaluationConfig) -> TierPolicy:
    """``config.policy`` when given, else the packaged tier named ``config.tier``."""
    return config.policy if config.policy is not None else load_tier(config.tier)


def check_config(config: EvaluationConfig) -> None:
    """Fast checks of everything that needs no model: sources, spec, tier, counts."""
    if (config.subject is None) == (config.edit is None):
        raise UsageError("give exactly one of --subject (a checkpoint) or --edit (a spec)")
    if config.edit is not None:
        parse_spec(config.edit)
    else:
        assert config.subject is not None
        parse_source(config.subject)
    _check_baseline_side(config)


def _check_baseline_side(config: EvaluationConfig) -> None:
    """What an :class:`Evaluator` needs before loading anything (it judges subjects later)."""
    parse_source(config.baseline)
    resolve_tier(config)
    if config.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {config.batch_size}")
    if config.tuned_params is not None and not Path(config.tuned_params).is_file():
        raise NotFoundError(f"tuned params file not found: {config.tuned_params}")


def evaluate(config: EvaluationConfig, progress: Progress | None = None) -> EvaluationReport:
    """One evaluation: ``subject`` checkpoint, or ``edit`` applied to the baseline."""
    check_config(config)  # the subject/edit side too, before the Evaluator loads anything
    started = time.perf_counter()
    evaluator = Evaluator(config, progress)
    if config.edit is not None:
        report = evaluator.judge_edit(config.edit, label=config.edit_label)
    else:
        assert config.subject is not None
        if parse_source(config.subject).identity != evaluator.base_src.identity:
            evaluator.release_baseline()  # peak memory: never two large models at once
        report = evaluator.judge_source(config.subject, label=config.edit_label)
    timings = {**report.provenance.timings, "total": time.perf_counter() - started}
    return report.model_copy(
        update={"provenance": report.provenance.model_copy(update={"timings": timings})}
    )
