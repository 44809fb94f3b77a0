"""The parameters of one suite run, what ``--resume`` must find unchanged, and the demo's
recorded relaxations."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from editproof.fileio import canonical_digest

if TYPE_CHECKING:
    from editproof.evaluation import EvaluationConfig

Mode = Literal["full", "calibrate-only", "run-only", "errors-only"]
Determinism = Literal["throughput", "strict"]

CONFIG_FORMAT = "editproof.suite-config"

# The demo suite runs the embedded model on two CPU cores in minutes. Each of these is a
# relaxation against the seed suites' settings, and each is written into the verdict.
DEMO_SEQ_LEN = 128
DEMO_WINDOWS = 16
DEMO_RUNS = 1
DEMO_CALIBRATION_RUNS = 2
FULL_SEQ_LEN = 512
FULL_WINDOWS = 64
CALIBRATION_RUNS = 5


class SuiteConfig(BaseModel):
    """Everything that decides what a suite run computes. Frozen; stored in
    ``state/config.json``. ``fingerprint`` covers the fields a resume must not change."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal["editproof.suite-config"] = "editproof.suite-config"
    schema_version: Literal[1] = 1
    suite: str
    models: list[str] = Field(min_length=1)
    model_dirs: dict[str, str]
    scenario_ids: list[str] | None = None
    tier: str = "balanced"
    net: bool = False
    determinism: Determinism = "throughput"
    repeats: int = Field(default=0, ge=0)
    mode: Mode = "full"
    provider: str = "auto"
    data_path: str | None = None
    data_field: str = "text"
    dataset: str | None = None
    dataset_config: str | None = None
    split: str = "validation"
    seq_len: int = Field(ge=2)
    n_windows: int = Field(ge=1)
    batch_size: int | None = Field(default=None, ge=1)  # None: auto (measure/batching.py)
    seed: int = 42
    calibration_runs: int = Field(ge=0)
    # Runs per scenario: None = the catalogue's defaults (clean 3, stress 2, faults 1).
    runs_override: int | None = Field(default=None, ge=1)
    relax_token_floor: bool = False
    device: str = "auto"
    forward: Literal["auto", "native", "transformers"] = "auto"
    devices: list[str] | None = None
    task_timeout_s: float = Field(default=6 * 3600, gt=0)
    max_attempts: int = Field(default=3, ge=1)
    catalogue_digest: str
    tuned_digest: str
    relaxations: list[str] = Field(default_factory=list)

    def fingerprint_fields(self) -> dict[str, object]:
        keep = (
            "suite",
            "models",
            "scenario_ids",
            "tier",
            "determinism",
            "provider",
            "data_path",
            "data_field",
            "dataset",
            "dataset_config",
            "split",
            "seq_len",
            "n_windows",
            "batch_size",
            "seed",
            "calibration_runs",
            "runs_override",
            "relax_token_floor",
            "catalogue_digest",
            "tuned_digest",
        )
        data = self.model_dump(mode="json")
        return {k: data[k] for k in keep}

    def fingerprint(self) -> str:
        return canonical_digest(self.fingerprint_fields())

    def to_json(self) -> str:
        data = self.model_dump(mode="json")
        data["fingerprint"] = self.fingerprint()
        return json.dumps(data, indent=2) + "\n"


def differences(old: SuiteConfig, new: SuiteConfig) -> list[str]:
    """The fingerprinted fields that differ, as ``name: old -> new``."""
    a, b = old.fingerprint_fields(), new.fingerprint_fields()
    return [f"{k}: {a[k]!r} -> {b[k]!r}" for k in a if a[k] != b[k]]


def demo_relaxations(seq_len: int, windows: int, runs: int, calibration: int) -> list[str]:
    return [
        f"demo suite: windows {windows}+{windows} x {seq_len} tokens "
        f"(seed suites: {FULL_WINDOWS}+{FULL_WINDOWS} x {FULL_SEQ_LEN})",
        f"demo suite: {runs} run per scenario (seed suites: clean 3, stress 2, faults 1); "
        "repeats on a deterministic CPU are bit-identical",
        f"demo suite: {calibration} calibration runs (seed suites: {CALIBRATION_RUNS})",
        "demo suite: token floor relaxed (recorded in every report's policy)",
    ]


def load_config(text: str, source: str) -> SuiteConfig:
    """Read ``state/config.json``; the stored fingerprint must match its fields."""
    from pydantic import ValidationError

    from editproof.errors import InvalidInputError

    try:
        data = json.loads(text)
        stored = data.pop("fingerprint", None)
        config = SuiteConfig.model_validate(data)
    except (json.JSONDecodeError, ValidationError, AttributeError) as exc:
        raise InvalidInputError(f"{source} is not a suite config: {exc}") from None
    if stored is not None and stored != config.fingerprint():
        raise InvalidInputError(f"{source} was edited: its fingerprint does not match its fields")
    return config


def evaluation_config(
    config: SuiteConfig, baseline: str, *, tuned_params: str, device: str
) -> EvaluationConfig:
    """The one EvaluationConfig every evaluation of ``baseline`` in this run uses."""
    from editproof.evaluation import EvaluationConfig

    return EvaluationConfig(
        baseline=baseline,
        edit="noop",
        tuned_params=tuned_params,
        tier=config.tier,
        provider=config.provider,
        data_path=config.data_path,
        data_field=config.data_field,
        dataset=config.dataset,
        dataset_config=config.dataset_config,
        split=config.split,
        seq_len=config.seq_len,
        n_preview=config.n_windows,
        n_final=config.n_windows,
        batch_size=config.batch_size,
        device=device,
        forward=config.forward,
        net=config.net,
        seed=config.seed,
        relax_token_floor=config.relax_token_floor,
        command=["editproof", "suite", "--suite", config.suite],
    )
