"""``build_pack``: stage a curated copy of a finished run beside the target, write
checksums, manifest and signatures, check the result with the verifier, then rename it into
place atomically. A failure or kill at any point leaves no directory under the pack's name;
a leftover staging dir (``.<name>.staging-<pid>-*``) is removed by the next build.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from editproof import __version__
from editproof.errors import InvalidInputError, NotFoundError, OutputError
from editproof.fileio import file_sha256
from editproof.pack import attestation, checksums, gpg, keys
from editproof.pack import layout as L
from editproof.pack.index import render_index
from editproof.pack.manifest import (
    Ed25519Signature,
    FileEntry,
    GpgSignature,
    Manifest,
    ModelDigest,
    Signatures,
    Tool,
)
from editproof.pack.readme import render_readme
from editproof.pack.recompute import load_report_bytes, verify_record
from editproof.report.verify import verify_report
from editproof.verdict.model import VerdictInputs


@dataclass
class Signer:
    key: Ed25519PrivateKey | None = None
    gpg_key: str | None = None
    gpg_fingerprint: str | None = None  # resolved up front by ``gpg.key_fingerprint``


@dataclass
class BuiltPack:
    path: Path
    manifest: Manifest
    verdict: str
    warnings: list[str] = field(default_factory=list)


def check_target(pack_dir: Path) -> None:
    """Fail before any work when ``pack_dir`` exists non-empty or cannot be created."""
    if pack_dir.exists() or pack_dir.is_symlink():
        if pack_dir.is_symlink() or not pack_dir.is_dir():
            raise OutputError(f"pack path {pack_dir} exists and is not a directory")
        if any(pack_dir.iterdir()):
            raise OutputError(
                f"pack dir {pack_dir} already exists and is not empty; "
                "it is never overwritten (choose another --pack-dir)"
            )
    probe = pack_dir.absolute().parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise OutputError(f"cannot create the pack dir {pack_dir}: {probe} is not a directory")
    # A real write, not os.access: root passes access checks on read-only or virtual
    # file systems (/proc, a read-only mount) where creating the pack would still fail.
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".editproof-probe-", dir=probe))
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise OutputError(f"cannot write the pack dir {pack_dir} ({probe}: {reason})") from None


def check_run(run_dir: Path) -> VerdictInputs:
    """A finished suite run: config, revisions, verdict inputs and the final verdict exist."""
    if not (run_dir / L.RUN_CONFIG).is_file():
        raise NotFoundError(f"{run_dir} is not a suite run directory (no {L.RUN_CONFIG})")
    for rel in (L.RUN_VERDICT_INPUTS, f"{L.RUN_REPORTS}/final_verdict.json", L.RUN_REVISIONS):
        if not (run_dir / rel).is_file():
            raise InvalidInputError(
                f"{run_dir} is not a finished run (no {rel}); finish it with "
                "`editproof suite --resume --out RUN_DIR` first"
            )
    try:
        return VerdictInputs.model_validate_json((run_dir / L.RUN_VERDICT_INPUTS).read_bytes())
    except ValueError as exc:
        raise InvalidInputError(f"{run_dir / L.RUN_VERDICT_INPUTS}: malformed ({exc})") from None


def _plan(run_dir: Path, inputs: VerdictInputs) -> list[tuple[Path, str]]:
    """(source file, pack path) for everything copied from the run."""
    reports = run_dir / L.RUN_REPORTS
    out = [(reports / n, f"{L.RESULTS}/{n}") for n in L.RESULT_FILES_REQUIRED]
    out += [
        (reports / n, f"{L.RESULTS}/{n}")
        for n in L.RESULT_FILES_OPTIONAL
        if (reports / n).is_file()
    ]
    if (run_dir / L.RUN_REPEATS).is_file():
        out.append((run_dir / L.RUN_REPEATS, L.REPEATS))
    for name, dest in (
        (L.RUN_CONFIG, L.META_CONFIG),
        (L.RUN_SCENARIOS, L.META_SCENARIOS),
        (L.RUN_TUNED, L.META_TUNED),
        (L.RUN_REVISIONS, L.META_REVISIONS),
        (L.RUN_ENVIRONMENT, L.META_ENVIRONMENT),
        (L.RUN_VERDICT_INPUTS, L.META_VERDICT_INPUTS),
    ):
        if (run_dir / name).is_file():
            out.append((run_dir / name, dest))
    presets = run_dir / L.RUN_PRESETS
    if presets.is_dir():
        out += [(p, f"{L.META_PRESETS}/{p.name}") for p in sorted(presets.glob("*.json"))]
    for ref in inputs.reports:
        src_dir = (run_dir / ref.path).parent
        dest = L.cert_dir(ref.path)
        out.append((run_dir / ref.path, f"{dest}/{L.REPORT_NAME}"))
        out += [(src_dir / n, f"{dest}/{n}") for n in L.CERT_SIDECARS if (src_dir / n).is_file()]
    for src, _ in out:
        if not src.is_file():
            raise NotFoundError(f"the run is missing {src}")
    return out


def source_revision() -> tuple[str | None, bool | None]:
    """The git commit of editproof's own source and whether it has local changes; (None,
    None) for an installed package or when git is unavailable."""
    here = Path(__file__).resolve().parent
    try:
        top = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "--show-toplevel", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        lines = top.stdout.split()
        if not (Path(lines[0]) / "src" / "editproof").is_dir():
            return None, None
        dirty = subprocess.run(
            ["git", "-C", lines[0], "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return lines[1], bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError, IndexError):
        return None, None


def _write(root: Path, rel: str, data: bytes) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("xb") as f:  # x: a collision in the plan fails instead of overwriting
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _stage(staging: Path, run_dir: Path, inputs: VerdictInputs, signer: Signer) -> None:
    for src, rel in _plan(run_dir, inputs):
        data = src.read_bytes()
        if rel.endswith("/" + L.REPORT_NAME):
            report = load_report_bytes(data, str(src))
            result = verify_report(report)
            if not result.ok:
                raise InvalidInputError(
                    f"{src} does not verify ({result.problems[0]}); "
                    "refusing to pack a report that does not recompute"
                )
            record = verify_record(rel, result)
            _write(
                staging,
                rel.rsplit("/", 1)[0] + "/" + L.VERIFY_NAME,
                (json.dumps(record, indent=2) + "\n").encode(),
            )
        _write(staging, rel, data)
    commit, dirty = source_revision()
    tool = {
        "format": "editproof.tool-info",
        "schema_version": 1,
        "name": "editproof",
        "version": __version__,
        "source_revision": commit,
        "source_dirty": dirty,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
    _write(staging, L.META_TOOL, (json.dumps(tool, indent=2) + "\n").encode())
    if signer.key is not None:
        _write(staging, L.PUBLIC_KEY, keys.public_pem(signer.key.public_key()))


def _signatures(signer: Signer) -> Signatures:
    fp = keys.fingerprint(signer.key.public_key()) if signer.key is not None else None
    ed = Ed25519Signature(fingerprint=fp, public_key_hint=L.PUBLIC_KEY) if fp else None
    gp = None
    if signer.gpg_key is not None:
        gp = GpgSignature(fingerprint=signer.gpg_fingerprint or gpg.key_fingerprint(signer.gpg_key))
    return Signatures(ed25519=ed, gpg=gp)


def _entries(staging: Path) -> list[FileEntry]:
    files = []
    for path in sorted(p for p in staging.rglob("*") if p.is_file()):
        rel = path.relative_to(staging).as_posix()
        if rel not in L.CONTROL_FILES:
            files.append(FileEntry(path=rel, size=path.stat().st_size, sha256=file_sha256(path)))
    return files


def _json(staging: Path, rel: str) -> Any:
    return json.loads((staging / rel).read_text("utf-8"))


def _manifest(staging: Path, files: list[FileEntry], sigs: Signatures, sums: bytes) -> Manifest:
    verdict = _json(staging, L.FINAL_VERDICT)
    revisions = _json(staging, L.META_REVISIONS)
    tool = _json(staging, L.META_TOOL)
    models = [
        ModelDigest(
            model=m,
            kind=info.get("kind"),
            revision=info.get("revision"),
            weight_sha256=info.get("weight_sha256"),
        )
        for m, info in (revisions.get("models") or {}).items()
    ]
    return Manifest(
        generated_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        tool=Tool(
            version=tool["version"],
            source_revision=tool["source_revision"],
            source_dirty=tool["source_dirty"],
        ),
        suite=verdict["suite"],
        verdict=verdict["verdict"],
        suite_parameters=_json(staging, L.META_CONFIG),
        models=models,
        reports=sum(1 for f in files if f.path.endswith("/" + L.REPORT_NAME)),
        files=files,
        checksums_sha256_digest=hashlib.sha256(sums).hexdigest(),
        signing_key_fingerprint=sigs.ed25519.fingerprint if sigs.ed25519 else None,
        signatures=sigs,
    )


def _fsync_tree(root: Path) -> None:
    for dirpath, _dirs, _files in os.walk(root):
        fd = os.open(dirpath, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def clean_stale_staging(parent: Path, name: str) -> list[Path]:
    """Remove staging dirs of this pack name left by a build that died (its pid is gone)."""
    removed = []
    prefix = L.staging_prefix(name)
    for p in parent.glob(prefix + "*") if parent.is_dir() else []:
        pid_text = p.name[len(prefix) :].split("-", 1)[0]
        if pid_text.isdigit() and _alive(int(pid_text)):
            continue
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # our own earlier attempt in this process is finished
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def build_pack(run_dir: Path, pack_dir: Path, signer: Signer) -> BuiltPack:
    """Build the proof pack of the finished run ``run_dir`` at ``pack_dir``."""
    from editproof.pack.policy import VerifyPolicy
    from editproof.pack.verify import verify_pack

    check_target(pack_dir)
    inputs = check_run(run_dir)
    parent = pack_dir.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    clean_stale_staging(parent, pack_dir.name)
    staging = Path(
        tempfile.mkdtemp(prefix=f"{L.staging_prefix(pack_dir.name)}{os.getpid()}-", dir=parent)
    )
    try:
        staging.chmod(0o755)
        sigs = _signatures(signer)
        _stage(staging, run_dir, inputs, signer)
        verdict = _json(staging, L.FINAL_VERDICT)
        readme = render_readme(
            verdict=verdict["verdict"],
            suite=verdict["suite"],
            models=list(verdict["models"]),
            signatures=sigs,
            reports=len(inputs.reports),
        )
        _write(staging, L.README, readme.encode())
        _write(staging, L.INDEX, render_index(staging).encode())
        files = _entries(staging)
        sums = checksums.render([(f.path, f.sha256) for f in files])
        _write(staging, L.CHECKSUMS, sums)
        manifest = _manifest(staging, files, sigs, sums)
        data = manifest.to_bytes()
        _write(staging, L.MANIFEST, data)
        if signer.key is not None:
            _write(staging, L.SIGNATURE, keys.sign(signer.key, data))
            stmt = attestation.statement(manifest, data)
            _write(staging, L.ATTESTATION, attestation.envelope(stmt, signer.key))
        if signer.gpg_key is not None:
            gpg.sign(staging / L.MANIFEST, signer.gpg_key)
        key = signer.key.public_key() if signer.key is not None else None
        check = verify_pack(staging, VerifyPolicy.default(key=key))
        if check.exit_code != 0:
            bad = next(c for c in check.checks if c.outcome == "fail")
            raise InvalidInputError(f"the built pack does not verify: {bad.name}: {bad.detail}")
        _fsync_tree(staging)
        if pack_dir.is_dir():
            pack_dir.rmdir()  # empty (checked above); rename cannot replace a non-empty dir
        os.rename(staging, pack_dir)
        _fsync_dir(parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return BuiltPack(pack_dir, manifest, manifest.verdict, [c.detail for c in check.warnings])


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
