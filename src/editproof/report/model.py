"""The evaluation report contract: ``evaluation.report.json``, format + schema_version 1.

Everything needed to recompute the verdict lives inside the report: the raw per-window
losses and token counts of both arms, window ids and token hashes, the resolved policy and
every seed. Non-finite losses are stored as ``null`` (strict JSON has no NaN) and counted.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from editproof.policy import TierPolicy

REPORT_FORMAT = "editproof.evaluation-report"
SCHEMA_VERSION = 1

Status = Literal["PASS", "FAIL"]
GuardStatus = Literal["pass", "warn", "fail"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ToolInfo(_Model):
    name: Literal["editproof"] = "editproof"
    version: str


class ModelInfo(_Model):
    """What was loaded for one arm, and the digest that pins its exact weights."""

    spec: str
    kind: str
    label: str
    resolved_revision: str | None = None
    architecture: str
    model_type: str
    n_params: int
    n_layers: int
    vocab_size: int | None = None
    weight_sha256: str
    weight_tensors: int
    weight_bytes: int
    tied: list[list[str]] = Field(default_factory=list)
    dtype: str
    device: str
    load_seconds: float
    # Which forward computed the arm: "native" (editproof's Llama-family forward) or
    # "transformers"; reports before the native forward existed are all "transformers".
    forward: str = "transformers"


class WindowSet(_Model):
    """Per-window raw data of one arm on one split, aligned by position."""

    window_ids: list[str]
    token_hashes: list[str]
    token_counts: list[int]
    mean_nll: list[float | None]


class ArmSummary(_Model):
    ppl_preview: float | None
    ppl_final: float | None
    tokens_preview: int
    tokens_final: int
    non_finite_windows: int


class TelemetryInfo(_Model):
    device: str
    dtype: str
    batch_size: int
    windows: int
    tokens: int
    seconds: float
    tokens_per_s: float
    peak_memory_bytes: int
    peak_memory_kind: str
    oom_retries: int
    fast_head: bool


class Arm(_Model):
    model: ModelInfo
    preview: WindowSet
    final: WindowSet
    summary: ArmSummary
    telemetry: TelemetryInfo


class BootstrapInfo(_Model):
    method: str
    requested_method: str
    replicates: int
    alpha: float
    seed: int
    n: int
    degenerate: bool
    degenerate_reason: str | None = None
    fallback_reason: str | None = None


class TailInfo(_Model):
    n: int
    epsilon: float
    max_delta: float
    quantiles: dict[str, float]
    tail_mass: float
    tail_mass_weighted: float


class PrimaryMetric(_Model):
    """Subject vs baseline perplexity on the final windows, paired by window id."""

    kind: Literal["ppl_causal"] = "ppl_causal"
    basis: str = "final windows; token-weighted mean per-window delta log-loss"
    baseline_ppl: float | None
    subject_ppl: float | None
    delta_log: float | None
    ratio: float | None
    ci_log: tuple[float, float] | None
    display_ci: tuple[float, float] | None
    bootstrap: BootstrapInfo | None
    tail: TailInfo | None
    invalid: bool
    invalid_reason: str | None = None
    unstable: bool
    unstable_reasons: list[str] = Field(default_factory=list)


class Drift(_Model):
    """Preview->final perplexity drift of the subject, relative to the baseline's own.

    Dividing by the baseline's drift cancels any difficulty imbalance between the two window
    sets, so the gate isolates drift the edit caused.
    """

    subject: float | None
    baseline: float | None
    paired: float | None
    band: tuple[float, float]


class Gate(_Model):
    name: str
    passed: bool
    enforced: bool
    measured: float | None
    threshold: float | tuple[float, float]
    comparison: Literal["<=", ">=", "within"]
    relaxed: bool = False
    note: str = ""


class GuardResult(_Model):
    """One guard's comparison of the subject with the baseline (filled by the guards).

    ``enforced`` guards (invariants, spectral, rmt) decide the overall status; informational
    ones (variance) are reported but never fail a run.
    """

    name: str
    status: GuardStatus
    enforced: bool = True
    measured: dict[str, float] = Field(default_factory=dict)
    thresholds: dict[str, float] = Field(default_factory=dict)
    violations: list[str] = Field(default_factory=list)
    seconds: float = 0.0
    contract_digest: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)


# The guard chain, in order, and whether each guard decides the overall status.
GUARD_ENFORCEMENT: dict[str, bool] = {
    "invariants": True,
    "spectral": True,
    "rmt": True,
    "variance": False,
}


class GuardsSection(_Model):
    """Guard results; ``status`` is the worst over *enforced* guards.

    ``probes`` holds the sidecar evidence of probe scenarios (``rmt_probe``, ``ve_probe``),
    which the CLI also writes as ``rmt_probe.json`` / ``ve_probe.json`` beside the report.
    """

    status: Literal["not_run", "pass", "warn", "fail"] = "not_run"
    results: list[GuardResult] = Field(default_factory=list)
    probes: dict[str, dict[str, Any]] = Field(default_factory=dict)


class DatasetInfo(_Model):
    provider: str
    source: dict[str, str]
    corpus_sha256: str
    n_chars: int
    tokenizer_sha256: str
    separator_id: int | None
    seq_len: int
    seed: int
    n_preview: int
    n_final: int
    candidates: int
    duplicates: int
    tokens_available: int
    plan_digest: str
    difficulty: dict[str, float]


class EditInfo(_Model):
    """How the subject came to be: ``noop``, ``custom`` (a checkpoint) or an in-memory edit.

    For in-memory edits ``record`` is the edit's measured EditRecord, ``tuned_source`` names
    the tuned-params file a ``clean`` spec resolved from, and ``restore_verified`` says the
    baseline's exact weights (per-tensor sha256) were back after the subject was measured.
    For a checkpoint written by ``editproof edit --save``, ``spec``/``record`` come from its
    ``edit_metadata.json`` and ``claimed_digest_match`` says whether the weights loaded still
    have the digest that file claims (False after a dtype change or any later modification).
    """

    label: str
    label_source: Literal["inferred", "user"]
    spec: str | None = None
    record: dict[str, Any] | None = None
    tuned_source: str | None = None
    restore_verified: bool | None = None
    claimed_digest_match: bool | None = None


class PolicyInfo(_Model):
    """The resolved policy that judged the run. ``source`` names a preset or tier patch
    (path and sha256) when one was merged into the packaged tier."""

    tier: TierPolicy
    digest: str
    token_floor_relaxed: bool = False
    relax_reason: str | None = None
    source: str | None = None


class Provenance(_Model):
    seeds: dict[str, int]
    versions: dict[str, str]
    device: str
    device_name: str
    dtype: str
    batch_size: int
    deterministic: bool
    timings: dict[str, float]
    command: list[str] = Field(default_factory=list)


class EvaluationReport(_Model):
    format: Literal["editproof.evaluation-report"] = "editproof.evaluation-report"
    schema_version: Literal[1] = 1
    run_id: str = Field(min_length=4)
    created_at: str
    tool: ToolInfo
    status: Status
    policy: PolicyInfo
    dataset: DatasetInfo
    edit: EditInfo
    baseline: Arm
    subject: Arm
    primary_metric: PrimaryMetric
    drift: Drift
    gates: list[Gate]
    guards: GuardsSection = Field(default_factory=GuardsSection)
    # One boolean per gate and guard (primary_metric_acceptable, invariants_pass, ...), the
    # flags suites and verdicts read; derived from gates and guards, recomputed by verify.
    validation: dict[str, bool] = Field(default_factory=dict)
    provenance: Provenance
