"""Build realistic, internally consistent evaluation reports without torch.

The per-window losses are synthetic, but every derived section is computed by
:mod:`editproof.report.derive` from them, exactly as a real run does, so the reports this
factory returns verify. Everything is deterministic in ``seed``.
"""

from __future__ import annotations

import hashlib
import platform
from typing import Any

import numpy as np

from editproof import __version__
from editproof.data import Window, plan_digest, token_hash, window_id
from editproof.policy import load_tier
from editproof.report import derive
from editproof.report.model import (
    GUARD_ENFORCEMENT,
    Arm,
    DatasetInfo,
    EditInfo,
    EvaluationReport,
    GuardResult,
    GuardsSection,
    GuardStatus,
    ModelInfo,
    PolicyInfo,
    Provenance,
    TelemetryInfo,
    ToolInfo,
    WindowSet,
)

SEQ_LEN = 256
TOKENS_PER_WINDOW = SEQ_LEN - 1  # the first token of a window has no prediction
VOCAB = 49152
BASELINE_SPEC = "hf:HuggingFaceTB/SmolLM2-135M"
EDITED_SPEC = "./runs/smollm2-135m-int8"
# Same offset the evaluation uses between the window seed and the bootstrap seed.
BOOTSTRAP_SEED_OFFSET = 503
CREATED_AT = "2025-03-14T09:26:53+00:00"


def _hex(*parts: object, length: int = 64) -> str:
    return hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:length]


def _model_info(spec: str, weights_key: str, *, load_seconds: float) -> ModelInfo:
    return ModelInfo(
        spec=spec,
        kind="hf" if spec.startswith("hf:") else "path",
        label=spec.rsplit("/", 1)[-1],
        resolved_revision=_hex("rev", spec, length=40) if spec.startswith("hf:") else None,
        architecture="LlamaForCausalLM",
        model_type="llama",
        n_params=134_515_008,
        n_layers=30,
        vocab_size=VOCAB,
        weight_sha256=_hex("weights", weights_key),
        weight_tensors=273,
        weight_bytes=538_060_032,
        tied=[["lm_head.weight", "model.embed_tokens.weight"]],
        dtype="float32",
        device="cpu",
        load_seconds=load_seconds,
    )


def _telemetry(n_windows: int, tokens: int, rng: np.random.Generator) -> TelemetryInfo:
    tokens_per_s = float(rng.uniform(1500.0, 2200.0))
    return TelemetryInfo(
        device="cpu",
        dtype="float32",
        batch_size=8,
        windows=n_windows,
        tokens=tokens,
        seconds=tokens / tokens_per_s,
        tokens_per_s=tokens_per_s,
        peak_memory_bytes=int(rng.integers(1_100_000_000, 1_400_000_000)),
        peak_memory_kind="process_rss",
        oom_retries=0,
        fast_head=True,
    )


def _window_set(windows: tuple[Window, ...], nll: list[float | None]) -> WindowSet:
    return WindowSet(
        window_ids=[w.id for w in windows],
        token_hashes=[w.token_hash for w in windows],
        token_counts=[TOKENS_PER_WINDOW] * len(windows),
        mean_nll=nll,
    )


def make_report(
    *,
    n_windows: int = 64,
    shift: float = 0.0,
    seed: int = 0,
    nan: bool = False,
    tier: str = "balanced",
    relax: bool = True,
    noise: float = 0.0,
    subject_spec: str | None = None,
    edit_label: str | None = None,
    guards: GuardsSection | None = None,
) -> EvaluationReport:
    """A report for ``n_windows`` preview + ``n_windows`` final windows of 255 tokens.

    Baseline per-window mean NLLs are drawn from N(2.7, 0.4); the subject's are the
    baseline's plus ``shift`` plus N(0, ``noise``), so ``shift=0, noise=0`` is an exact noop.
    ``nan=True`` stores ``None`` (a non-finite loss) for 1 in 16 subject final windows, which
    makes the primary metric invalid. ``relax`` relaxes the token floor, which 2 x 64 short
    windows cannot reach. ``subject_spec`` defaults to the baseline spec for an exact noop and
    to a local path otherwise; ``guards`` (default: not run) feeds the overall status.
    """
    if n_windows < 1:
        raise ValueError("n_windows must be at least 1")
    rng = np.random.default_rng(seed)
    policy = load_tier(tier)
    noop = shift == 0.0 and noise == 0.0

    # Windows: distinct stream positions dealt at random into the preview and final sets.
    total = 2 * n_windows
    candidates = 3 * total + int(rng.integers(0, total))
    picked = rng.permutation(rng.choice(candidates, size=total, replace=False))

    def windows(indices: np.ndarray) -> tuple[Window, ...]:
        out = []
        for k in sorted(int(i) for i in indices):
            tokens = rng.integers(0, VOCAB, SEQ_LEN)
            out.append(
                Window(
                    id=window_id(k),
                    index=k,
                    tokens=tuple(int(t) for t in tokens),
                    token_hash=token_hash(tokens),
                    difficulty=float(rng.normal(10.5, 0.6)),
                )
            )
        return tuple(out)

    preview, final = windows(picked[:n_windows]), windows(picked[n_windows:])

    # Losses: clipped away from zero so every window stays a plausible LM loss.
    def arm_losses(n: int) -> tuple[list[float], list[float]]:
        base = np.clip(rng.normal(2.7, 0.4, n), 0.05, None)
        subj = base + shift + (rng.normal(0.0, noise, n) if noise > 0 else 0.0)
        return [float(v) for v in base], [float(v) for v in subj]

    base_prev, subj_prev = arm_losses(n_windows)
    base_final, subj_final_f = arm_losses(n_windows)
    subj_final: list[float | None] = list(subj_final_f)
    if nan:
        for i in rng.choice(n_windows, size=max(1, n_windows // 16), replace=False):
            subj_final[int(i)] = None

    base_sets = (_window_set(preview, list(base_prev)), _window_set(final, list(base_final)))
    subj_sets = (_window_set(preview, list(subj_prev)), _window_set(final, subj_final))
    tokens = total * TOKENS_PER_WINDOW
    if subject_spec is None:
        subject_spec = BASELINE_SPEC if noop else EDITED_SPEC

    def arm(spec: str, weights_key: str, sets: tuple[WindowSet, WindowSet]) -> Arm:
        return Arm(
            model=_model_info(spec, weights_key, load_seconds=float(rng.uniform(1.5, 4.0))),
            preview=sets[0],
            final=sets[1],
            summary=derive.arm_summary(*sets),
            telemetry=_telemetry(total, tokens, rng),
        )

    baseline = arm(BASELINE_SPEC, BASELINE_SPEC, base_sets)
    # A noop subject is the baseline's own weights, so the weight digests match.
    subject = arm(
        subject_spec, BASELINE_SPEC if noop else f"{subject_spec}:{shift}:{noise}", subj_sets
    )

    boot_seed = seed + BOOTSTRAP_SEED_OFFSET
    tokens_available = candidates * SEQ_LEN + int(rng.integers(0, SEQ_LEN))
    pm = derive.primary_metric(
        baseline.final,
        subject.final,
        policy,
        seed=boot_seed,
        n_preview=len(subject.preview.window_ids),
    )
    dr = derive.drift(baseline.summary, subject.summary, policy)
    gate_list = derive.gates(
        pm, dr, subject.summary, policy, tokens_available=tokens_available, floor_relaxed=relax
    )
    guards = guards or GuardsSection()
    diff_p = float(np.mean([w.difficulty for w in preview]))
    diff_f = float(np.mean([w.difficulty for w in final]))
    timings = {
        "load_baseline": baseline.model.load_seconds,
        "windows": 0.41,
        "measure_baseline": baseline.telemetry.seconds,
        "load_subject": subject.model.load_seconds,
        "measure_subject": subject.telemetry.seconds,
        "derive": 0.12,
    }
    timings["total"] = sum(timings.values())

    return EvaluationReport(
        run_id=_hex("run", seed, shift, noise, n_windows, nan, tier, relax, length=12),
        created_at=CREATED_AT,
        tool=ToolInfo(version=__version__),
        status=derive.overall_status(gate_list, guards),
        policy=PolicyInfo(
            tier=policy,
            digest=policy.digest(),
            token_floor_relaxed=relax,
            relax_reason="test fixture: 2 x 64 short windows cannot reach the token floor"
            if relax
            else None,
        ),
        dataset=DatasetInfo(
            provider="pydoc",
            source={
                "provider": "pydoc",
                "module": "pydoc_data.topics",
                "python": platform.python_version(),
            },
            corpus_sha256=_hex("corpus", seed),
            n_chars=tokens_available * 4,
            tokenizer_sha256=_hex("tokenizer", length=16),
            separator_id=0,
            seq_len=SEQ_LEN,
            seed=seed,
            n_preview=n_windows,
            n_final=n_windows,
            candidates=candidates,
            duplicates=0,
            tokens_available=tokens_available,
            plan_digest=plan_digest(preview, final),
            difficulty={
                "preview_mean": diff_p,
                "final_mean": diff_f,
                "gap": abs(diff_p - diff_f),
                "candidate_std": 0.6,
            },
        ),
        edit=EditInfo(
            label=edit_label or ("noop" if noop else "custom"),
            label_source="user" if edit_label else "inferred",
        ),
        baseline=baseline,
        subject=subject,
        primary_metric=pm,
        drift=dr,
        gates=gate_list,
        guards=guards,
        validation=derive.validation_flags(pm, gate_list, guards),
        provenance=Provenance(
            seeds={"windows": seed, "bootstrap": boot_seed},
            versions={
                "editproof": __version__,
                "python": platform.python_version(),
                "platform": "Linux-6.8.0-x86_64-with-glibc2.39",
                "torch": "2.5.1",
                "transformers": "4.46.3",
                "numpy": np.__version__,
                "cuda": "None",
            },
            device="cpu",
            device_name="x86_64",
            dtype="float32",
            batch_size=8,
            deterministic=True,
            timings=timings,
            command=["editproof", "evaluate", BASELINE_SPEC, subject_spec, "--tier", tier],
        ),
    )


def guard_result(
    name: str,
    status: GuardStatus = "pass",
    *,
    measured: dict[str, float] | None = None,
    thresholds: dict[str, float] | None = None,
) -> GuardResult:
    """A guard result as the chain writes it: enforcement from GUARD_ENFORCEMENT, one
    violation line for a non-passing status."""
    return GuardResult(
        name=name,
        status=status,
        enforced=GUARD_ENFORCEMENT[name],
        measured=measured or {},
        thresholds=thresholds or {},
        violations=[] if status == "pass" else [f"{name}: synthetic {status}"],
        contract_digest=_hex("contract", name, length=16),
    )


def with_guards(
    report: EvaluationReport,
    results: list[GuardResult],
    probes: dict[str, dict[str, Any]] | None = None,
) -> EvaluationReport:
    """``report`` with these guard results and probe sidecars; the guard status, the
    validation flags and the overall status are derived again, as the builder does."""
    section = GuardsSection(
        status=derive.guards_status(results), results=results, probes=probes or {}
    )
    return report.model_copy(
        update={
            "guards": section,
            "status": derive.overall_status(report.gates, section),
            "validation": derive.validation_flags(report.primary_metric, report.gates, section),
        }
    )
