"""Baseline-vs-subject evaluation, composed from the layers below.

:class:`Evaluator` loads the baseline once, cuts the windows and measures the baseline once;
it then judges any number of subjects: another checkpoint (:meth:`Evaluator.judge_source`)
or an edit applied in memory and restored exactly afterwards (:meth:`Evaluator.judge_edit`).
The CLI, ``editproof tune`` and (later) the suite worker all go through it.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from editproof import facts as _facts
from editproof.data import make_windows, tokenize_corpus
from editproof.data.token_cache import cached_tokens
from editproof.edits import EditSpec, applied, check_edit, parse_spec, resolve_clean
from editproof.edits.tuned import TunedParams, resolve_probe
from editproof.errors import EvaluationError, InvalidInputError, UsageError
from editproof.evalconfig import (
    DEFAULT_SEQ_LEN,
    DEFAULT_WINDOWS,
    DEMO_RELAX_REASON,
    DEMO_SEQ_LEN,
    TUNED_ENV,
    EvaluationConfig,
    check_baseline_side,
    check_config,
    default_seq_len,
    load_text,
    model_key,
    resolve_tier,
    tuned_params_for,
)
from editproof.guards.base import MeasureContext, Signature
from editproof.guards.chain import judge_all, measure_all, warm_libraries
from editproof.measure.batching import auto_batch_size

__all__ = [
    "BOOTSTRAP_SEED_OFFSET",
    "DEFAULT_SEQ_LEN",
    "DEFAULT_WINDOWS",
    "DEMO_RELAX_REASON",
    "DEMO_SEQ_LEN",
    "TUNED_ENV",
    "EvaluationConfig",
    "Evaluator",
    "check_config",
    "default_seq_len",
    "evaluate",
    "load_text",
    "model_key",
    "resolve_tier",
    "tuned_params_for",
]
from editproof.lm import (
    LoadedModel,
    describe,
    load_model,
    parse_source,
    preflight_source,
    weight_digest,
)
from editproof.lm.digest import aliases, fingerprints
from editproof.lm.fit import check_positions, check_vocab
from editproof.lm.forward import forward_for
from editproof.lm.integrity import (
    RestoreEvidence,
    backup_lines,
    edited_digest,
    verify_restore,
)
from editproof.lm.save import read_edit_metadata
from editproof.measure import WindowNLL, measure_nll
from editproof.policy import TierPolicy
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

# Offset between the window seed and the bootstrap seed, so the two streams never coincide.
BOOTSTRAP_SEED_OFFSET = 503
# Faults that change the model's layout: no guard may reuse baseline numbers for them.
_STRUCTURAL = frozenset({"shape_mismatch", "missing_tensors", "weight_tying_break"})

Progress = Callable[[str], None]
# on_windows(phase, done, total): phase "baseline" or "subject"; (phase, 0, total) first,
# then once per measured batch, ending with done == total.
WindowsProgress = Callable[[str, int, int], None]


class Evaluator:
    """The baseline, measured once; subjects are judged against it one at a time.

    ``edits``: specs this Evaluator will judge; they are resolved (``clean`` through the
    tuned params, then their scope against the loaded model) after the baseline loads and
    before anything is measured, and kept in :attr:`edits`. ``on_windows(phase, done,
    total)`` follows the measurement of the ``baseline`` and each ``subject`` window by
    window (``progress`` still gets the text lines, the guards included).
    """

    def __init__(
        self,
        config: EvaluationConfig,
        progress: Progress | None = None,
        *,
        edits: Sequence[str | EditSpec] | None = None,
        on_windows: WindowsProgress | None = None,
        tuned: TunedParams | None = None,
    ) -> None:
        self.config = config
        self._say = progress or (lambda _msg: None)
        self._on_windows = on_windows
        # Resolved clean specs -> the tuned params file they came from, for the report.
        self._tuned_sources: dict[tuple[str, str], str] = {}
        # Read once, on the first spec that needs it, unless given (a suite's Ray actor).
        self._tuned: TunedParams | None = tuned
        # Cheap checks first, so a typo fails before minutes of model loading.
        check_baseline_side(config)
        self.base_src = parse_source(config.baseline)
        self.tier = resolve_tier(config)
        demo = self.base_src.kind == "demo"
        seq_len = config.seq_len if config.seq_len is not None else default_seq_len(demo)
        relax = demo if config.relax_token_floor is None else config.relax_token_floor
        self.relax_reason = (
            None
            if not relax
            else DEMO_RELAX_REASON
            if config.relax_token_floor is None
            else "relaxed by --relax-token-floor"
        )
        self.timings: dict[str, float] = {}
        t0 = time.perf_counter()
        corpus = load_text(config)  # read beside the imports when the CLI prefetched it
        self.timings["text"] = time.perf_counter() - t0

        # Both arms run one forward: native when every model can take it (lm/forward.py).
        self.forward, self._native = forward_for(
            config.forward, config.baseline, config.subject, config.device
        )
        self._say(f"loading baseline {self.base_src.label} ({self.forward} forward)")
        self._model: LoadedModel | None = load_model(
            self.base_src,
            device=config.device,
            dtype=config.dtype,
            net=config.net,
            native=self._native.get(repr(self.base_src.identity)),
        )
        self.timings["load_baseline"] = self._model.load_seconds
        check_positions(self._model, seq_len)
        if self.config.batch_size is None:  # auto: from the model, seq_len and the device
            size = auto_batch_size(self._model.model, seq_len)
            self.config = replace(self.config, batch_size=size)
            self._say(f"batch size: {size} windows (auto)")
        # Every edit asked for is resolved against the loaded model before the baseline is
        # measured, so a scope that matches nothing fails in seconds, not minutes.
        t0 = time.perf_counter()
        self.edits: list[EditSpec] = self.check_edits(edits) if edits is not None else []
        self.timings["check_edits"] = time.perf_counter() - t0
        loaded = self._model
        tok_facts = loaded.tokenizer_facts
        if tok_facts is None:
            raise InvalidInputError(f"baseline '{self.base_src.spec}' has no tokenizer")
        t0 = time.perf_counter()

        def tokenize() -> Any:
            # The loaded tokenizer, or its verified bare backend (lm/loading.py).
            return tokenize_corpus(corpus, loaded.encoder(), separator_id=tok_facts.eos_token_id)

        self.stream, cached = cached_tokens(
            corpus.sha256, tok_facts.identity, tok_facts.eos_token_id, tokenize
        )
        self._say(f"tokens: {len(self.stream):,} ({'cached' if cached else 'tokenized'})")
        self._check_vocab(self._model, "baseline")
        self._plan_windows(seq_len, config.seed)
        self.timings["windows"] = time.perf_counter() - t0
        self.dataset = _facts.dataset_info(
            corpus, self.plan, tok_facts.digest, tok_facts.eos_token_id
        )

        t0 = time.perf_counter()
        self.base_fingerprints = fingerprints(self._model.model)
        self.timings["fingerprints"] = time.perf_counter() - t0
        self._warm_up(self._model)
        # The sha256 pass (CPU and copy engine) overlaps the baseline measurement (GPU), and
        # so does loading what the guards' first measurement would load.
        with ThreadPoolExecutor(max_workers=2) as pool:
            digest_job = pool.submit(_facts.timed_digest, self._model.model)
            warm_job = (
                pool.submit(_timed, warm_libraries, self._model.device, self._model.dtype)
                if config.guards
                else None
            )
            nll = self._measure(self._model, "baseline")
            self.timings["measure_baseline"] = nll.telemetry.seconds
            t0 = time.perf_counter()
            self.base_digest, self.timings["digest_baseline"] = digest_job.result()
            if warm_job is not None:
                self.timings["guards_warm"] = warm_job.result()
            self.timings["digest_baseline_wait"] = time.perf_counter() - t0
        self._sign_baseline(nll)

    def _warm_up(self, loaded: LoadedModel) -> None:
        """On a GPU, one discarded forward before the first timed arm: CUDA, cuBLAS and
        kernel start-up costs get their own name (``warmup``) instead of slowing the
        baseline's tokens/s. Its numbers are thrown away; it changes no measured value.

        One window of full length loads every kernel a batch runs (a whole batch of 32
        windows on a 7B model spent 0.45 s more computing numbers nobody reads)."""
        if not loaded.device.startswith("cuda"):
            return
        t0 = time.perf_counter()
        measure_nll(loaded.model, self.windows[:1], batch_size=1, device=loaded.device)
        self.timings["warmup"] = time.perf_counter() - t0

    def _plan_windows(self, seq_len: int, seed: int) -> None:
        self.plan = make_windows(
            self.stream,
            seq_len=seq_len,
            n_preview=self.config.n_preview,
            n_final=self.config.n_final,
            seed=seed,
        )
        self.windows = [list(w.tokens) for w in self.plan.all_windows()]
        self._say(
            f"windows: {len(self.plan.preview)} preview + {len(self.plan.final)} final, "
            f"{seq_len} tokens each"
        )

    def _sign_baseline(self, nll: WindowNLL) -> None:
        """The baseline arm from its measured NLL, and its guard signatures (once)."""
        model = self.model
        self.baseline = self._arm(_facts.model_info(model, self.base_digest), nll)
        self.guard_ctx = MeasureContext(
            device=model.device,
            windows=self.windows,
            seed=self.config.seed,
            batch_size=self.batch_size,
        )
        self.base_signatures: dict[str, Signature] = {}
        if self.config.guards:
            self._say("guards: measuring the baseline")
            t0 = time.perf_counter()
            self.base_signatures = measure_all(model.model, self.guard_ctx, self.tier.guards)
            self.timings["guards_baseline"] = time.perf_counter() - t0

    def reseeded(self, seed: int) -> Evaluator:
        """The same loaded weights and token stream with the windows drawn by ``seed``: a
        new Evaluator whose baseline NLL and guard signatures are measured on those windows.

        It shares the model with this one (judge on one at a time); the weight digest and
        fingerprints carry over, since the weights are the same.
        """
        other = copy.copy(self)
        other.config = replace(self.config, seed=seed)
        other.timings = {}
        other._tuned_sources = dict(self._tuned_sources)
        t0 = time.perf_counter()
        other._plan_windows(self.plan.seq_len, seed)
        other.timings["windows"] = time.perf_counter() - t0
        other.dataset = self.dataset.model_copy(update=_facts.plan_facts(other.plan))
        nll = other._measure(other.model, "baseline")
        other.timings["measure_baseline"] = nll.telemetry.seconds
        other._sign_baseline(nll)
        return other

    @property
    def batch_size(self) -> int:
        """Windows per forward pass (``auto`` was resolved when the baseline loaded)."""
        assert self.config.batch_size is not None
        return self.config.batch_size

    @property
    def model(self) -> LoadedModel:
        if self._model is None:
            raise EvaluationError("the baseline model was released; create a new Evaluator")
        return self._model

    def use_policy(self, policy: TierPolicy, source: str | None) -> None:
        """Judge later subjects under ``policy`` (e.g. the tier with a calibrated preset).

        Only thresholds may change: the baseline's guard signatures were measured under the
        current policy, so a policy that measures differently (windows, iterations) is refused.
        """
        if _measurement_fields(policy) != _measurement_fields(self.tier):
            raise UsageError(
                f"policy '{policy.name}' measures guards differently from '{self.tier.name}' "
                "(windows or iterations); build a new Evaluator for it"
            )
        self.tier = policy
        self.config = replace(self.config, policy=policy, policy_source=source)

    def release_baseline(self) -> None:
        """Drop the baseline weights (its measurements stay) to make room for a subject."""
        self._model = None
        _facts.empty_cache()

    def check_edits(self, specs: Sequence[str | EditSpec]) -> list[EditSpec]:
        """Resolve ``specs`` for the loaded baseline without applying or measuring anything.

        ``clean`` specs get their params from the tuned params (``config.tuned_params``,
        then ``$PACK_TUNED_EDIT_PARAMS_FILE``, then the shipped file) for this model and a
        concrete layer for ``layer=last``; every weight edit's scope and every probe's
        selection must then match at least one weight of the model. Raises UsageError
        naming the spec (bad spec, or a scope matching nothing: the message says which
        layers and families the model has) or InvalidInputError (no usable tuned entry).
        The resolved specs can be passed to :meth:`judge_edit` as they are.
        """
        return [self._resolve(spec)[0] for spec in specs]

    def judge_source(self, spec: str, *, label: str | None = None) -> EvaluationReport:
        """Judge a separately stored subject (a ``custom`` checkpoint, or the same source)."""
        src = parse_source(spec)
        timings = dict(self.timings)
        if src.identity == self.base_src.identity and self._model is not None:
            # Identical source: measure the loaded weights again rather than load a second
            # copy; the subject's digest is still computed on its own.
            loaded = self._model
        else:
            preflight_source(spec, net=self.config.net)  # a bad file fails before loading
            self._say(f"loading subject {src.label}")
            loaded = load_model(
                src,
                device=self.config.device,
                dtype=self.config.dtype,
                net=self.config.net,
                tokenizer=False,
                native=self._native.get(repr(src.identity)),
            )
            timings["load_subject"] = loaded.load_seconds
            check_positions(loaded, self.plan.seq_len)
            self._check_vocab(loaded, "subject")
        nll = self._measure(loaded, "subject")
        timings["measure_subject"] = nll.telemetry.seconds
        t0 = time.perf_counter()
        info = _facts.model_info(loaded, weight_digest(loaded.model))
        # Not overlapped here: all of it is waited for.
        timings["digest_subject"] = timings["digest_subject_wait"] = time.perf_counter() - t0
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
        """Apply ``edit`` to the baseline in memory, judge it, and restore exact weights.

        ``edit`` may be a spec as written (resolved here as :meth:`check_edits` does) or
        one :meth:`check_edits` already resolved.
        """
        loaded = self.model
        spec, tuned_source = self._resolve(edit, tuned)
        timings = dict(self.timings)
        self._say(f"subject: baseline + {spec.text}")
        # Input-aligned probes measure their direction on the first evaluation windows.
        handle = applied(loaded.model, spec, sample=self.windows[:4])
        layout = spec.type in _STRUCTURAL
        with handle as record, ThreadPoolExecutor(max_workers=1) as pool:
            timings["edit_apply"] = record.seconds
            # The edited tensors' sha256 (CPU and copy engine) overlaps the subject's
            # measurement and guards (GPU); nothing writes weights until the restore below.
            digest_job = pool.submit(
                edited_digest,
                loaded.model,
                self.base_digest,
                record.tensors,
                structural=spec.kind != "edit",
            )
            # So do the backups' (the bytes the restore writes back): with them the restore
            # check compares on the device instead of rehashing on the critical path.
            backups_job = None if layout else pool.submit(backup_lines, handle.backups())
            nll = self._measure(loaded, "subject")
            timings["measure_subject"] = nll.telemetry.seconds
            # Weight edits and tensor-level faults leave every other tensor bit-identical;
            # guards may reuse the baseline's numbers for those. Layout changes may not.
            touched = None if layout else frozenset(aliases(loaded.model, record.tensors))
            guards = self._judge_guards(loaded, spec.type, timings, touched, nll=nll)
            t0 = time.perf_counter()
            digest, timings["digest_subject"] = digest_job.result()
            hashed: dict[str, str] | None = None
            if backups_job is not None:
                hashed, timings["digest_backups"] = backups_job.result()
            timings["digest_subject_wait"] = time.perf_counter() - t0
            info = _facts.model_info(
                loaded,
                digest,
                spec=f"{self.base_src.spec} + {spec.text}",
                kind="edited",
                load_seconds=0.0,
            )
        t0 = time.perf_counter()
        evidence = RestoreEvidence(hashed, handle.restored) if hashed is not None else None
        verify_restore(
            loaded.model, self.base_digest, self.base_fingerprints, record.tensors, evidence
        )
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

    def _tuned_params(self) -> TunedParams:
        if self._tuned is None:
            self._tuned = tuned_params_for(self.config.tuned_params)
        return self._tuned

    def _resolve(
        self, edit: str | EditSpec, tuned: TunedParams | None = None
    ) -> tuple[EditSpec, str | None]:
        """The concrete spec for the loaded baseline, checked, and its tuned params source."""
        spec = parse_spec(edit) if isinstance(edit, str) else edit
        model = self.model.model
        if spec.clean:
            tuned = tuned or self._tuned_params()
            spec = resolve_clean(
                spec, model_key(self.base_src), tuned, n_layers=describe(model).n_layers
            )
            assert spec.resolved_from is not None
            self._tuned_sources[spec.text, spec.resolved_from] = tuned.source
        elif spec.kind == "probe" and spec.resolved_from is None:
            # The model's calibrated probe strength fills what the spec did not set.
            tuned = tuned or self._tuned_params()
            resolved = resolve_probe(spec, model_key(self.base_src), tuned)
            if resolved is not spec:
                spec = resolved
                assert spec.resolved_from is not None
                self._tuned_sources[spec.text, spec.resolved_from] = tuned.source
        try:
            check_edit(model, spec)
        except UsageError as exc:
            shown = spec.resolved_from or spec.text
            raise UsageError(f"edit '{shown}': {exc.message}") from None
        source = self._tuned_sources.get((spec.text, spec.resolved_from or ""))
        return spec, source if spec.resolved_from else None

    def _measure(self, loaded: LoadedModel, phase: str) -> WindowNLL:
        report = self._on_windows
        total = len(self.windows)
        if report is None:
            self._say(f"{phase}: {total} windows")
            on_batch = None
        else:
            report(phase, 0, total)

            def on_batch(done: int, total: int) -> None:
                report(phase, done, total)

        return measure_nll(
            loaded.model,
            self.windows,
            batch_size=self.batch_size,
            device=loaded.device,
            on_batch=on_batch,
        )

    def _arm(self, info: ModelInfo, nll: WindowNLL) -> Arm:
        preview, final = _facts.split_windows(self.plan, nll)
        return make_arm(info, preview, final, TelemetryInfo(**nll.telemetry.to_dict()))

    def _check_vocab(self, loaded: LoadedModel, role: str) -> None:
        check_vocab(loaded, int(self.stream.max()) if len(self.stream) else 0, role)

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
            batch_size=self.batch_size,
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


def _timed(fn: Callable[..., None], *args: Any) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def evaluate(
    config: EvaluationConfig,
    progress: Progress | None = None,
    *,
    on_windows: WindowsProgress | None = None,
) -> EvaluationReport:
    """One evaluation: ``subject`` checkpoint, or ``edit`` applied to the baseline."""
    check_config(config)  # the subject/edit side too, before the Evaluator loads anything
    started = time.perf_counter()
    edits = [config.edit] if config.edit is not None else None
    evaluator = Evaluator(config, progress, edits=edits, on_windows=on_windows)
    if config.edit is not None:
        report = evaluator.judge_edit(evaluator.edits[0], label=config.edit_label)
    else:
        assert config.subject is not None
        if parse_source(config.subject).identity != evaluator.base_src.identity:
            evaluator.release_baseline()  # peak memory: never two large models at once
        report = evaluator.judge_source(config.subject, label=config.edit_label)
    timings = {**report.provenance.timings, "total": time.perf_counter() - started}
    return report.model_copy(
        update={"provenance": report.provenance.model_copy(update={"timings": timings})}
    )


def _measurement_fields(policy: TierPolicy) -> tuple[object, ...]:
    g = policy.guards
    return (g.spectral.power_iters, g.rmt.windows, g.rmt.power_iters, g.variance.windows)
