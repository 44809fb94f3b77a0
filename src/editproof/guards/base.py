"""The guard protocol: measure a model once, compare a subject's signature with the baseline's.

A guard never looks at the subject alone. ``measure`` runs once for the baseline (the result
is cached by the evaluator) and once per subject; ``compare`` judges the subject's signature
against the baseline's under a policy. Signatures are plain JSON-able data, so the baseline's
can be stored in a run directory and reused, and each carries the measurement *contract*
(estimator, iterations, sample windows...) whose digest must match between the two sides:
comparing numbers measured differently is refused rather than silently done.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from editproof.fileio import canonical_digest
from editproof.measure.nll import WindowNLL
from editproof.report.model import GuardResult, GuardStatus


class Signature(BaseModel):
    """What a guard measured on one model. ``data`` is guard-specific and JSON-able."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    guard: str
    contract: dict[str, Any]
    data: dict[str, Any] = Field(default_factory=dict)
    seconds: float = 0.0

    @property
    def contract_digest(self) -> str:
        return contract_digest(self.contract)


def contract_digest(contract: dict[str, Any]) -> str:
    """sha256 (16 hex) of the canonical JSON of a measurement contract."""
    return canonical_digest(contract)


class MeasureContext(BaseModel):
    """What a guard may use while measuring: the device and the evaluation windows.

    ``windows`` are the token windows of the evaluation (preview then final); activation
    guards pick their fixed sample from them by index, so baseline and subject see the same
    tokens. ``seed`` seeds every random estimator (power-iteration start vectors).
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    device: str
    windows: Sequence[Sequence[int]]
    seed: int = 0
    batch_size: int = 8
    # Set by the evaluator for in-memory edits: the parameters the edit touched (tied
    # aliases included) and the baseline's signatures. A weight-based guard may then reuse
    # the baseline's numbers for every untouched tensor, which are bit-identical.
    touched: frozenset[str] | None = None
    baseline: dict[str, Signature] | None = None
    # Set by the evaluator while judging: the live subject's per-window NLL on ``windows``
    # (same order), already measured for the primary metric. The variance A/B test reads
    # its unscaled arm from it instead of running the same forward passes again.
    subject_nll: WindowNLL | None = None


class Guard(Protocol):
    """A guard: ``name``, ``measure`` and ``compare``. Implementations are stateless."""

    name: str

    def measure(self, model: Any, ctx: MeasureContext, policy: dict[str, Any]) -> Signature: ...

    def compare(
        self, baseline: Signature, subject: Signature, policy: dict[str, Any]
    ) -> GuardResult: ...


def worst(statuses: Sequence[GuardStatus]) -> GuardStatus:
    """fail > warn > pass."""
    if "fail" in statuses:
        return "fail"
    return "warn" if "warn" in statuses else "pass"


def contract_mismatch(name: str, baseline: Signature, subject: Signature) -> GuardResult | None:
    """A failing result when the two signatures were not measured the same way."""
    if baseline.contract_digest == subject.contract_digest:
        return None
    return GuardResult(
        name=name,
        status="fail",
        violations=[
            f"measurement contract differs: baseline {baseline.contract_digest}, "
            f"subject {subject.contract_digest}"
        ],
        contract_digest=subject.contract_digest,
    )
