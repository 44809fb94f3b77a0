"""``verify_pack``: checks in a fixed order, each phase with its exit code; the first failing
phase stops the run (later phases are reported as skipped).

3 pack, manifest, checksums or a listed file missing · 4 manifest schema (strict JSON, known
format and version, safe paths; unsafe archive member names) · 5 signature (manifest
signatures and the in-toto attestation's DSSE signature) · 6 integrity (checksum binding,
the attestation's binding to this manifest, every listed file's size and sha256, links,
special and extra files) · 7 every report recomputed and the verdict recomputed from them ·
8 verdict not PASS (only with ``require_pass``).

The pack is read through a :class:`~editproof.pack.source.PackSource`: a directory or a
``.proofpack.tar`` archive read in place; every check is the same for both.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal, NoReturn

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from editproof.pack import attestation, checksums, gpg, keys, safefs
from editproof.pack import layout as L
from editproof.pack.manifest import Manifest, ManifestError, listed_paths_leniently, parse_manifest
from editproof.pack.policy import VerifyPolicy
from editproof.pack.recompute import check_reports, check_verdict
from editproof.pack.source import PackSource, TarSource, open_source
from editproof.pack.verification import (
    PHASE_OF_CODE,
    PHASES,
    Check,
    Outcome,
    PackVerification,
)

__all__ = ["PHASES", "Check", "PackVerification", "verify_pack"]

MAX_MANIFEST_BYTES = 64 << 20
# Files the verifier parses; their bytes are kept from the read that hashed them.
_KEEP_SUFFIXES = (".json", ".txt", ".pem")


class _Stop(Exception):
    pass


class _Run:
    def __init__(self, pack: Path, src: PackSource, policy: VerifyPolicy) -> None:
        self.src, self.policy = src, policy
        kind: Literal["directory", "archive"] = (
            "archive" if isinstance(src, TarSource) else "directory"
        )
        self.result = PackVerification(pack=pack, policy=policy.name, kind=kind)
        self.phase, self.code = PHASES[0]

    def enter(self, phase: int) -> None:
        self.phase, self.code = PHASES[phase]

    def add(self, name: str, outcome: Outcome, detail: str) -> None:
        self.result.checks.append(Check(self.phase, name, outcome, detail, self.code))

    def fail(self, name: str, detail: str) -> NoReturn:
        self.add(name, "fail", detail)
        raise _Stop

    def warn_or_fail(self, strict: bool, name: str, detail: str) -> None:
        if strict:
            self.fail(name, detail)
        self.add(name, "warn", detail)


def verify_pack(pack: Path, policy: VerifyPolicy) -> PackVerification:
    """Verify the pack directory or ``.proofpack.tar`` archive at ``pack``."""
    src = open_source(pack)
    run = _Run(pack, src, policy)
    try:
        _verify(run)
    except _Stop:
        done = {c.phase for c in run.result.checks}
        for name, code in PHASES:
            if name not in done:
                run.result.checks.append(Check(name, name, "skip", "not reached", code))
        run.result.checks.sort(key=lambda c: PHASE_OF_CODE[c.exit_code])
    finally:
        if isinstance(src, TarSource):
            src.close()
    return run.result


def _verify(run: _Run) -> None:
    src, policy = run.src, run.policy
    # 3: presence (an unusable container fails with its own phase's code)
    problem = src.container_problem()
    if problem is not None:
        run.enter(PHASE_OF_CODE[problem[0]])
        run.fail("pack container", problem[1])
    control: dict[str, bytes] = {}
    for name in (L.MANIFEST, L.CHECKSUMS):
        try:
            got = src.read(name, keep=True)
        except FileNotFoundError:
            run.fail(name, f"{name} is missing")
        except (safefs.UnsafeFileError, OSError) as exc:
            run.fail(name, f"{name} is not a regular file ({exc})")
        if got.size > MAX_MANIFEST_BYTES:
            run.fail(name, f"{name} is larger than {MAX_MANIFEST_BYTES} bytes")
        assert got.data is not None
        control[name] = got.data
    missing = [p for p in listed_paths_leniently(control[L.MANIFEST]) if not src.exists(p)]
    if missing:
        run.fail("listed files", f"{len(missing)} listed file(s) missing: {', '.join(missing[:5])}")
    run.add("files present", "ok", "manifest.json, checksums.sha256 and every listed file exist")

    # 4: schema
    run.enter(1)
    try:
        manifest = parse_manifest(control[L.MANIFEST])
    except ManifestError as exc:
        run.fail("manifest schema", str(exc))
    run.result.manifest = manifest
    run.result.manifest_sha256 = hashlib.sha256(control[L.MANIFEST]).hexdigest()
    run.add(
        "manifest schema",
        "ok",
        f"{manifest.format} v{manifest.schema_version}, {len(manifest.files)} files",
    )

    # 5: signatures, then the attestation's DSSE signature by the same key
    run.enter(2)
    public = _check_signatures(run, manifest, control[L.MANIFEST])
    statement = _attestation_signature(run, manifest, public)

    # 6: integrity
    run.enter(3)
    if statement is not None:
        problems = attestation.binding_problems(statement, manifest, control[L.MANIFEST])
        if problems:
            run.fail("attestation binding", f"{L.ATTESTATION}: " + " | ".join(problems))
        run.add("attestation binding", "ok", "its manifest digest, subjects and verdict match")
    files = _check_integrity(run, manifest, control[L.CHECKSUMS])
    run.result.files = files

    # 7: reports and verdict recomputed
    run.enter(4)
    n, problems = check_reports(files)
    if problems:
        run.fail("reports recomputed", f"{len(problems)} problem(s): " + " | ".join(problems[:5]))
    run.add("reports recomputed", "ok", f"{n} report(s) recomputed from their raw numbers")
    verdict, problems = check_verdict(files)
    run.result.verdict = verdict
    if verdict is not None and verdict != manifest.verdict:
        problems.append(f"manifest says {manifest.verdict}, results/final_verdict.json {verdict}")
    if problems:
        run.fail("verdict recomputed", " | ".join(problems[:5]))
    run.add("verdict recomputed", "ok", f"{verdict}, recomputed from the pack's reports")

    # 8: the verdict itself
    run.enter(5)
    if verdict != "PASS":
        if policy.require_pass:
            run.fail("verdict PASS", f"the final verdict is {verdict}")
        run.add("verdict PASS", "warn", f"the final verdict is {verdict}: evidence, not proof")
    else:
        run.add("verdict PASS", "ok", "PASS")


def _check_signatures(run: _Run, manifest: Manifest, data: bytes) -> Ed25519PublicKey | None:
    """The manifest's signatures; returns the Ed25519 key that verified it, if any."""
    policy = run.policy
    ed, gp = manifest.signatures.ed25519, manifest.signatures.gpg
    trusted = False
    public: Ed25519PublicKey | None = None
    if ed is not None and manifest.signing_key_fingerprint != ed.fingerprint:
        run.fail("ed25519", "signing_key_fingerprint differs from the signature's fingerprint")
    if ed is None and manifest.signing_key_fingerprint is not None:
        run.fail("ed25519", "signing_key_fingerprint is set but no Ed25519 signature is declared")
    if ed is not None:
        try:
            sig = run.src.read(L.SIGNATURE, keep=True).data or b""
        except (FileNotFoundError, safefs.UnsafeFileError, OSError):
            run.fail(
                "ed25519",
                f"the manifest declares {L.SIGNATURE}, which is missing or not a regular file",
            )
        if policy.key is not None:
            public, source = policy.key, "the key you gave (--key)"
        else:
            public, source = _hint_key(run, ed.public_key_hint, manifest), "the pack's own key"
        fp = keys.fingerprint(public)
        if fp != ed.fingerprint:
            run.fail("ed25519", f"the pack was signed by {ed.fingerprint}, not by {source} ({fp})")
        if policy.key is None and policy.fingerprint is not None and fp != policy.fingerprint:
            run.fail("ed25519", f"signed by {fp}, not by the expected {policy.fingerprint}")
        if len(sig) != 64 or not keys.verify(public, sig, data):
            run.fail("ed25519", f"{L.SIGNATURE} is not a valid signature of manifest.json by {fp}")
        trusted = policy.key is not None or policy.fingerprint is not None
        run.result.signatures.append(f"ed25519 {fp} ({'trusted' if trusted else 'pack key'})")
        run.add(
            "ed25519",
            "ok" if trusted else "warn",
            f"valid, by {fp}"
            + (
                ""
                if trusted
                else " — checked against the pack's own key, "
                "a hint only; pass --key or --fingerprint to trust it"
            ),
        )
    elif policy.key is not None or policy.fingerprint is not None:
        run.fail("ed25519", "you asked for an Ed25519 signature; the pack has none")
    if gp is not None:
        trusted = _check_gpg(run, gp.fingerprint, data) or trusted
    elif policy.gpg_fingerprint is not None:
        run.fail("gpg", "you asked for a GPG signature; the pack has none")
    if ed is None and gp is None:
        run.warn_or_fail(
            policy.require_trusted_signature,
            "signed",
            "UNSIGNED pack: evidence-grade at most (strict needs a signature)",
        )
    elif policy.require_trusted_signature and not trusted:
        run.fail(
            "trusted signature",
            "strict mode needs a signature by a key given out of band "
            "(--key PUB, --fingerprint FP or --gpg-fingerprint FP); the pack's own key is "
            "only a hint",
        )
    return public


def _attestation_signature(
    run: _Run, manifest: Manifest, public: Ed25519PublicKey | None
) -> attestation.Statement | None:
    if public is None:
        run.add("attestation", "ok", "none: no Ed25519 key signed this pack, so it carries none")
        return None
    try:
        data = run.src.read(L.ATTESTATION, keep=True).data
    except FileNotFoundError:
        run.warn_or_fail(
            run.policy.require_trusted_signature,
            "attestation",
            f"{L.ATTESTATION} is missing (strict: a signed pack must carry it)",
        )
        return None
    except (safefs.UnsafeFileError, OSError) as exc:
        run.fail("attestation", f"{L.ATTESTATION} is not a regular file ({exc})")
    try:
        statement = attestation.open_envelope(data or b"", public)
    except attestation.AttestationError as exc:
        run.fail("attestation", f"{L.ATTESTATION}: {exc}")
    run.add(
        "attestation",
        "ok",
        f"DSSE in-toto Statement signed by {keys.fingerprint(public)}, "
        f"{len(statement.subject)} subject(s)",
    )
    return statement


def _hint_key(run: _Run, hint: str | None, manifest: Manifest) -> Any:
    listed = {f.path for f in manifest.files}
    if hint is None or hint not in listed:
        run.fail("ed25519", "no --key given and the pack holds no listed public key")
    assert hint is not None
    try:
        data = run.src.read(hint, keep=True).data or b""
        return keys.parse_public(data, hint)
    except Exception as exc:
        run.fail("ed25519", f"the pack's public key {hint} is unusable ({exc})")


def _check_gpg(run: _Run, recorded: str, data: bytes) -> bool:
    policy = run.policy
    if not gpg.available():
        run.warn_or_fail(
            policy.require_trusted_signature or policy.gpg_fingerprint is not None,
            "gpg",
            "the pack has a GPG signature but gpg is not installed",
        )
        return False
    try:
        asc = run.src.read(L.GPG_SIGNATURE, keep=True).data or b""
    except (FileNotFoundError, safefs.UnsafeFileError, OSError):
        run.fail("gpg", f"the manifest declares {L.GPG_SIGNATURE}, which is missing")
    check = gpg.verify_bytes(asc, data)
    if check.no_public_key and policy.gpg_fingerprint is None:
        run.add(
            "gpg",
            "warn",
            f"not checked: {check.detail} (import it to check, or pass "
            "--gpg-fingerprint to require it)",
        )
        return False
    if not check.ok:
        run.fail("gpg", check.detail)
    if recorded not in check.fingerprints:
        run.fail("gpg", f"signed by {check.fingerprints[0]}, the manifest records {recorded}")
    trusted = policy.gpg_fingerprint is not None
    if trusted and policy.gpg_fingerprint.upper() not in check.fingerprints:  # type: ignore[union-attr]
        run.fail("gpg", f"signed by {check.fingerprints[0]}, not by {policy.gpg_fingerprint}")
    run.result.signatures.append(f"gpg {recorded} ({'trusted' if trusted else 'keyring'})")
    run.add("gpg", "ok", check.detail)
    return trusted


def _check_integrity(run: _Run, manifest: Manifest, sums: bytes) -> dict[str, bytes]:
    policy, src = run.policy, run.src
    if hashlib.sha256(sums).hexdigest() != manifest.checksums_sha256_digest:
        run.fail("checksums binding", "sha256 of checksums.sha256 differs from the manifest's")
    try:
        listed = checksums.parse(sums)
    except ValueError as exc:
        run.fail("checksums binding", str(exc))
    if listed != {f.path: f.sha256 for f in manifest.files}:
        run.fail("checksums binding", "checksums.sha256 and the manifest list different files")
    run.add("checksums binding", "ok", "checksums.sha256 is the one the manifest binds")
    kept: dict[str, bytes] = {}
    linked: list[str] = []
    for entry in manifest.files:
        try:
            got = src.read(entry.path, keep=entry.path.endswith(_KEEP_SUFFIXES))
        except FileNotFoundError:
            run.fail("file digests", f"{entry.path}: missing")
        except (safefs.UnsafeFileError, OSError) as exc:
            run.fail("file digests", str(exc))
        if got.size != entry.size or got.sha256 != entry.sha256:
            run.fail("file digests", f"{entry.path}: content differs from the manifest")
        if got.nlink > 1:
            linked.append(entry.path)
        if got.data is not None:
            kept[entry.path] = got.data
    run.add("file digests", "ok", f"{len(manifest.files)} files match size and sha256")
    if linked:
        run.warn_or_fail(
            policy.reject_hard_links,
            "hard links",
            f"{len(linked)} file(s) have other hard links: {', '.join(linked[:5])}",
        )
    allowed = {f.path for f in manifest.files} | {L.MANIFEST, L.CHECKSUMS}
    if manifest.signatures.ed25519 is not None:
        allowed |= {L.SIGNATURE, L.ATTESTATION}
    if manifest.signatures.gpg is not None:
        allowed.add(L.GPG_SIGNATURE)
    try:
        found = src.entries()
    except safefs.UnsafeFileError as exc:
        run.fail("extra files", str(exc))
    odd = sorted(f"{p} ({k})" for p, k in found.items() if k != "file")
    if odd and src.strict_kinds:
        run.fail(
            "archive members", f"{len(odd)} link(s) or special member(s): {', '.join(odd[:5])}"
        )
    extra = sorted(f"{p} ({k})" for p, k in found.items() if p not in allowed or k != "file")
    if extra:
        run.warn_or_fail(
            policy.reject_extra_files,
            "extra files",
            f"{len(extra)} not in the manifest: {', '.join(extra[:5])}",
        )
    else:
        run.add("extra files", "ok", "nothing outside the manifest")
    return kept
