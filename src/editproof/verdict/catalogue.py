"""The scenario catalogue: what a suite runs on every model, and what each scenario must show.

``scenarios.json`` (package data, format ``editproof.scenario-catalogue``) lists every
scenario with its category, strictness, intent, primary guard, how its subject is generated
(an edit, fault or probe spec, with optional per-model parameter overrides) and which
detectors must fire. A suite filters it to the scenarios that name the suite (a scenario
*without* ``suites`` belongs to every suite) and then to ``--scenario-ids``; the result is the
*effective* catalogue, written once to ``state/scenarios.json``. Planning and the verdict read
only that file.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from editproof.errors import InvalidInputError, NotFoundError, UsageError
from editproof.fileio import canonical_digest

CATALOGUE_FORMAT = "editproof.scenario-catalogue"
SCHEMA_VERSION = 1
FILE_NAME = "scenarios.json"

Category = Literal["clean", "stress", "error_injection"]
Strictness = Literal["must_pass", "must_fail", "must_detect", "informational"]
Intent = Literal["clean_control", "catastrophic_failure", "subtle_detectable", "fault_detection"]
PrimaryGuard = Literal["primary_metric", "invariants", "spectral", "rmt", "variance"]
GuardName = Literal["invariants", "spectral", "rmt", "variance"]
GuardLevel = Literal["pass", "warn", "fail", "not_run"]
ParamValue = int | float | str | bool

CATEGORIES: tuple[Category, ...] = ("clean", "stress", "error_injection")
# Runs per scenario when the catalogue does not say (the reference's defaults).
DEFAULT_RUNS: dict[str, int] = {"clean": 3, "stress": 2, "error_injection": 1}
GATING: frozenset[str] = frozenset({"must_pass", "must_fail", "must_detect"})


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ValidationFlagDetector(_Model):
    """A boolean of the report's ``validation`` map has the expected value."""

    kind: Literal["validation_flag"] = "validation_flag"
    flag: str
    expected: bool


class GuardStatusDetector(_Model):
    """A guard's status is one of ``allowed`` (``not_run`` when the guard is absent)."""

    kind: Literal["guard_status"] = "guard_status"
    guard: GuardName
    allowed: list[GuardLevel] = Field(min_length=1)


class GuardMeasureDetector(_Model):
    """A guard's measured value (e.g. spectral ``caps``) is at least ``min``."""

    kind: Literal["guard_measure"] = "guard_measure"
    guard: GuardName
    key: str
    min: float


class ProbeDetector(_Model):
    """A field of a probe sidecar (``rmt_probe`` / ``ve_probe``): equal to ``expected``,
    or at least ``min``."""

    kind: Literal["probe"] = "probe"
    probe: Literal["rmt_probe", "ve_probe"]
    field: str
    expected: bool | None = None
    min: float | None = None

    @model_validator(mode="after")
    def _one_test(self) -> ProbeDetector:
        if (self.expected is None) == (self.min is None):
            raise ValueError("give exactly one of 'expected' or 'min'")
        return self


Detector = Annotated[
    ValidationFlagDetector | GuardStatusDetector | GuardMeasureDetector | ProbeDetector,
    Field(discriminator="kind"),
]


class Requirements(_Model):
    catastrophic_required: bool = False
    primary_guard_required: bool = False
    detectors_any_of: list[Detector] = Field(default_factory=list)
    detectors_all_of: list[Detector] = Field(default_factory=list)


class Generation(_Model):
    """How the subject is made: a spec ``editproof.edits.parse_spec`` accepts (an edit, a
    ``clean`` edit resolved from tuned params, a fault, or a probe with ``key=value``
    overrides), plus per-model overrides of a probe's parameters (keyed by model id)."""

    spec: str = Field(min_length=1)
    params_by_model: dict[str, dict[str, ParamValue]] = Field(default_factory=dict)

    def spec_for(self, model_id: str) -> str:
        """The spec for ``model_id``: its overrides appended as probe parameters."""
        extra = self.params_by_model.get(model_id)
        if not extra:
            return self.spec
        head, _, tail = self.spec.partition(":")
        pairs = dict(p.split("=", 1) for p in tail.split(",") if "=" in p)
        pairs.update({k: _fmt(v) for k, v in extra.items()})
        return head + ":" + ",".join(f"{k}={v}" for k, v in pairs.items())


def _fmt(value: ParamValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class Scenario(_Model):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_]*$", max_length=64)
    description: str = ""
    # None: the scenario belongs to every suite. A list names the suites that run it.
    suites: list[str] | None = None
    category: Category
    failure_class: str
    strictness: Strictness
    intent: Intent
    primary_guard: PrimaryGuard
    generation: Generation
    # None: DEFAULT_RUNS of the category.
    runs: int | None = Field(default=None, ge=1, le=20)
    requirements: Requirements = Field(default_factory=Requirements)

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        allowed = {
            "clean": {"must_pass"},
            "stress": {"must_fail", "informational"},
            "error_injection": {"must_detect", "informational"},
        }[self.category]
        if self.strictness not in allowed:
            raise ValueError(
                f"strictness '{self.strictness}' does not fit category '{self.category}' "
                f"(allowed: {', '.join(sorted(allowed))})"
            )
        if self.requirements.catastrophic_required and self.strictness != "must_fail":
            raise ValueError("catastrophic_required needs strictness must_fail")
        if self.suites is not None and not self.suites:
            raise ValueError("suites: an empty list selects nothing; omit it for every suite")
        return self

    @property
    def gating(self) -> bool:
        return self.strictness in GATING

    @property
    def default_runs(self) -> int:
        return self.runs if self.runs is not None else DEFAULT_RUNS[self.category]

    def in_suite(self, suite: str) -> bool:
        return self.suites is None or suite in self.suites


class Selection(_Model):
    """How an effective catalogue was cut from its source."""

    suite: str
    scenario_ids: list[str] | None = None
    source: str
    source_digest: str


class Catalogue(_Model):
    format: Literal["editproof.scenario-catalogue"] = "editproof.scenario-catalogue"
    schema_version: Literal[1] = 1
    description: str = ""
    scenarios: list[Scenario]
    # Present on an effective (suite-filtered) catalogue only.
    selection: Selection | None = None

    @model_validator(mode="after")
    def _unique(self) -> Catalogue:
        seen: set[str] = set()
        for s in self.scenarios:
            if s.id in seen:
                raise ValueError(f"scenario id '{s.id}' appears twice")
            seen.add(s.id)
        return self

    @property
    def ids(self) -> list[str]:
        return [s.id for s in self.scenarios]

    def get(self, scenario_id: str) -> Scenario:
        for s in self.scenarios:
            if s.id == scenario_id:
                return s
        raise KeyError(scenario_id)

    def digest(self) -> str:
        """Digest of the scenarios alone (not the selection note)."""
        return canonical_digest([s.model_dump(mode="json") for s in self.scenarios])

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json", exclude_none=False), indent=2) + "\n"


def _describe_error(data: Any, exc: ValidationError) -> str:
    """One line naming the scenario (by id and position) and the field that is wrong."""
    err = exc.errors()[0]
    loc = list(err["loc"])
    where = "catalogue"
    if len(loc) >= 2 and loc[0] == "scenarios" and isinstance(loc[1], int):
        index = loc[1]
        raw = data.get("scenarios", []) if isinstance(data, dict) else []
        sid = raw[index].get("id") if index < len(raw) and isinstance(raw[index], dict) else None
        where = f"scenario '{sid}' (#{index + 1})" if sid else f"scenario #{index + 1}"
        loc = loc[2:]
    field = ".".join(str(p) for p in loc if not str(p).endswith("Detector"))
    msg = err["msg"].removeprefix("Value error, ")
    return f"{where}: {field + ': ' if field else ''}{msg}"


def parse_catalogue(text: str, source: str) -> Catalogue:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"scenario catalogue {source} is not valid JSON: {exc}") from None
    try:
        return Catalogue.model_validate(data)
    except ValidationError as exc:
        raise InvalidInputError(
            f"scenario catalogue {source}: {_describe_error(data, exc)}"
        ) from None


def packaged_catalogue() -> Catalogue:
    text = resources.files("editproof.verdict").joinpath(FILE_NAME).read_text(encoding="utf-8")
    return parse_catalogue(text, "(packaged scenarios.json)")


def load_catalogue(path: str | Path | None = None) -> Catalogue:
    """A catalogue file, or the packaged one when ``path`` is None."""
    if path is None:
        return packaged_catalogue()
    p = Path(path)
    if not p.is_file():
        raise NotFoundError(f"scenario catalogue not found: {p}")
    return parse_catalogue(p.read_text(encoding="utf-8"), str(p))


def select(
    catalogue: Catalogue, suite: str, scenario_ids: list[str] | None = None, source: str = ""
) -> Catalogue:
    """The effective catalogue: scenarios of ``suite``, then exactly ``scenario_ids`` if given.

    Unknown ids and ids that exist but do not belong to the suite are errors (UsageError);
    a one-sided selection (say, only clean scenarios) is kept exactly as asked.
    """
    in_suite = [s for s in catalogue.scenarios if s.in_suite(suite)]
    if scenario_ids is not None:
        known = set(catalogue.ids)
        unknown = [i for i in scenario_ids if i not in known]
        if unknown:
            raise UsageError(
                f"unknown scenario id(s): {', '.join(unknown)} (see `editproof list scenarios`)"
            )
        wanted = set(scenario_ids)
        outside = [i for i in scenario_ids if not catalogue.get(i).in_suite(suite)]
        if outside:
            raise UsageError(f"scenario(s) {', '.join(outside)} are not part of suite '{suite}'")
        in_suite = [s for s in in_suite if s.id in wanted]
    if not in_suite:
        raise UsageError(f"suite '{suite}' selects no scenario from the catalogue")
    return Catalogue(
        description=catalogue.description,
        scenarios=in_suite,
        selection=Selection(
            suite=suite,
            scenario_ids=scenario_ids,
            source=source or "packaged",
            source_digest=catalogue.digest(),
        ),
    )
