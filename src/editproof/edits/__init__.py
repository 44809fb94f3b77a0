"""Reversible in-memory weight edits, fault injections and guard probes.

``parse_spec`` reads ``<type>:<params>:<scope>``; ``apply_edit``/``applied`` change the live
model and hand back an :class:`EditRecord`; ``restore()`` gives back the exact baseline
weights. Nothing here writes model copies to disk.
"""

from editproof.edits.apply import AppliedEdit, active_edit, applied, apply_edit, check_edit
from editproof.edits.record import EditRecord, TensorStat
from editproof.edits.scope import Scope, Target, parse_scope, resolve_scope
from editproof.edits.spec import (
    EDIT_TYPES,
    FAULT_TYPES,
    PROBE_DEFAULTS,
    PROBE_TYPES,
    EditSpec,
    parse_spec,
)
from editproof.edits.tuned import (
    ProbeEntry,
    TunedEntry,
    TunedParams,
    default_tuned,
    load_tuned,
    resolve_clean,
    resolve_probe,
    save_tuned,
    shipped_tuned,
)

__all__ = [
    "EDIT_TYPES",
    "FAULT_TYPES",
    "PROBE_DEFAULTS",
    "PROBE_TYPES",
    "AppliedEdit",
    "EditRecord",
    "EditSpec",
    "ProbeEntry",
    "Scope",
    "Target",
    "TensorStat",
    "TunedEntry",
    "TunedParams",
    "active_edit",
    "applied",
    "apply_edit",
    "check_edit",
    "default_tuned",
    "load_tuned",
    "parse_scope",
    "parse_spec",
    "resolve_clean",
    "resolve_probe",
    "resolve_scope",
    "save_tuned",
    "shipped_tuned",
]
