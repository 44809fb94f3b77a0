"""Where things live: in a finished run directory (read) and in a proof pack (written).

The run-directory names repeat those of ``suite/layout.py`` as plain strings on purpose: the
pack reads a run through its files only and never imports the suite.
"""

from __future__ import annotations

import unicodedata
from pathlib import PurePosixPath

# --- the run directory (inputs) ---------------------------------------------------------
RUN_CONFIG = "state/config.json"
RUN_SCENARIOS = "state/scenarios.json"
RUN_TUNED = "state/tuned_edit_params.json"
RUN_REVISIONS = "state/model_revisions.json"
RUN_ENVIRONMENT = "state/environment.json"
RUN_VERDICT_INPUTS = "state/verdict_inputs.json"
RUN_REPORTS = "reports"
RUN_REPEATS = "analysis/determinism_repeats.json"
RUN_PRESETS = "presets"
DEFAULT_PACK_NAME = "proof_pack"

# Files of the run's reports/ dir copied to results/ (required first, then optional ones).
RESULT_FILES_REQUIRED = (
    "final_verdict.json",
    "final_verdict.txt",
    "category_summary.json",
    "guard_signal_summary.json",
    "guard_intervention_summary.json",
    "scenario_signal_summary.json",
    "detection_matrix.json",
)
RESULT_FILES_OPTIONAL = ("records.jsonl", "records.csv", "junit.xml")
# Per-report sidecars copied next to each report when the run emitted them.
CERT_SIDECARS = ("evaluation.html", "rmt_probe.json", "ve_probe.json")

# --- the pack (outputs) -------------------------------------------------------------------
RESULTS = "results"
CERTS = "certs"
METADATA = "metadata"
FINAL_VERDICT = "results/final_verdict.json"
FINAL_VERDICT_TEXT = "results/final_verdict.txt"
REPEATS = "results/determinism_repeats.json"
REPORT_NAME = "evaluation.report.json"
VERIFY_NAME = "verify.json"
META_CONFIG = "metadata/suite_config.json"
META_SCENARIOS = "metadata/scenarios.json"
META_TUNED = "metadata/tuned_edit_params.json"
META_REVISIONS = "metadata/model_revisions.json"
META_ENVIRONMENT = "metadata/environment.json"
META_VERDICT_INPUTS = "metadata/verdict_inputs.json"
META_TOOL = "metadata/tool.json"
META_PRESETS = "metadata/presets"
PUBLIC_KEY = "metadata/signing_key.pub.pem"  # a hint only: trust a key you got out of band
README = "README.md"
INDEX = "index.html"
CHECKSUMS = "checksums.sha256"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.json.sig"  # raw 64-byte Ed25519 signature of the manifest bytes
GPG_SIGNATURE = "manifest.json.asc"  # detached, armored GPG signature of the manifest bytes
# DSSE envelope of an in-toto Statement that binds the manifest's sha256 (Ed25519 packs).
ATTESTATION = "attestation.intoto.json"
# Not listed in the manifest: the manifest itself, its signatures, the attestation (it binds
# the manifest's digest, so the manifest cannot list it), and (bound by digest) the
# checksums file.
CONTROL_FILES = frozenset({MANIFEST, SIGNATURE, GPG_SIGNATURE, ATTESTATION, CHECKSUMS})

STAGING_MARK = ".staging-"


def staging_prefix(pack_name: str) -> str:
    """Prefix of a pack's staging dirs: ``.<name>.staging-`` (hidden, obviously temporary)."""
    return f".{pack_name}{STAGING_MARK}"


def cert_dir(report_ref_path: str) -> str:
    """``<model>/reports/<scenario>/run_<n>/evaluation.report.json`` (run dir) ->
    ``certs/<model>/<scenario>/run_<n>`` (pack): the seed's rule, the part after /reports/."""
    parts = PurePosixPath(report_ref_path).parts
    if len(parts) < 4 or parts[1] != "reports" or parts[-1] != REPORT_NAME:
        raise ValueError(f"'{report_ref_path}' is not <model>/reports/<...>/{REPORT_NAME}")
    return str(PurePosixPath(CERTS, parts[0], *parts[2:-1]))


def path_problem(path: str) -> str | None:
    """Why ``path`` is not a safe pack-relative file name, or None.

    Safe: relative POSIX, no empty / ``.`` / ``..`` parts, no backslash, NUL or control
    characters, NFC-normalised, not a control file.
    """
    if not path:
        return "empty path"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in path):
        return "control character or NUL in path"
    if "\\" in path:
        return "backslash in path"
    if path.startswith("/") or (len(path) > 1 and path[1] == ":"):
        return "absolute path"
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return "empty, '.' or '..' path component"
    if unicodedata.normalize("NFC", path) != path:
        return "path is not NFC-normalised"
    if path in CONTROL_FILES:
        return "a control file cannot be listed"
    return None


def collision_key(path: str) -> str:
    """Names that would collide on a case-insensitive or normalising file system."""
    return unicodedata.normalize("NFC", path).casefold()
