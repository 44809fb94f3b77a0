"""``editproof run | pack | verify | inspect | keygen``: proof packs on the command line.

``run`` is ``suite`` followed by ``pack``: it takes every option of ``suite`` (the same
declarations, composed into its signature) plus the pack's own, and checks keys, GPG and the
pack dir before the suite starts.
"""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path
from typing import Any

import typer

from editproof.cli import suite as suite_cmd
from editproof.errors import EXIT_GATES_FAILED, UsageError

VERIFY_HELP = "editproof verify --strict --key {pub} {pack}"


def _pack_options(
    pack_dir: Path | None = typer.Option(
        None, "--pack-dir", help="Where the pack goes [<run dir>/proof_pack]; never overwritten."
    ),
    sign_key: Path | None = typer.Option(
        None, "--sign-key", help="Ed25519 private key (PEM, mode 0600) [default key, made once]."
    ),
    no_sign: bool = typer.Option(False, "--no-sign", help="No Ed25519 signature (evidence only)."),
    gpg_key: str | None = typer.Option(
        None, "--gpg-key", help="Also GPG-sign with this key [$PACK_GPG_KEY; PACK_GPG_SIGN=0: off]."
    ),
    archive: bool = typer.Option(
        False, "--archive", help="Also write <pack dir>.proofpack.tar beside it (deterministic)."
    ),
) -> None:
    """Declarations only: their parameters are appended to ``run`` and used by ``pack``."""


_PACK_PARAMS = list(inspect.signature(_pack_options, eval_str=True).parameters.values())


def _signer(sign_key: Path | None, no_sign: bool, gpg_key: str | None) -> tuple[Any, list[str]]:
    """The signer, resolved and checked before any work; and lines saying what will sign."""
    from editproof.pack import gpg, keys
    from editproof.pack.build import Signer

    if no_sign and sign_key is not None:
        raise UsageError("give --sign-key or --no-sign, not both")
    lines: list[str] = []
    signer = Signer()
    if not no_sign:
        path = sign_key
        if path is None:
            path, created = keys.default_key()
            if created:
                lines.append(
                    f"created signing key {path} (public: {path.parent / keys.PUBLIC_NAME})"
                )
        signer.key = keys.load_private(path)
        pub = path.parent / keys.PUBLIC_NAME if sign_key is None else None
        lines.append(
            f"Ed25519 signature: key {keys.fingerprint(signer.key.public_key())}"
            + (f" ({pub})" if pub else f" ({path})")
        )
    else:
        lines.append("Ed25519 signature: none (--no-sign)")
    env = dict(os.environ)
    signer.gpg_key, line = gpg.configured_key(gpg_key, env, keys.config_home(env))
    if signer.gpg_key is not None:
        signer.gpg_fingerprint = gpg.key_fingerprint(signer.gpg_key)
    lines.append(line)
    if signer.key is None and signer.gpg_key is None:
        lines.append("WARNING: the pack will be UNSIGNED (evidence-grade only)")
    return signer, lines


def _public_key_path(sign_key: Path | None, signer: Any) -> str:
    from editproof.pack import keys

    if signer.key is None:
        return "PUB.pem"
    if sign_key is None:
        return str(keys.default_key_dir() / keys.PUBLIC_NAME)
    guess = sign_key.with_name(keys.PUBLIC_NAME)
    return str(guess) if guess.is_file() else "PUB.pem"


def _report_built(built: Any, pub: str, signer: Any) -> None:
    typer.echo(
        f"proof pack: {built.path} ({len(built.manifest.files)} files, "
        f"{built.manifest.reports} reports, verdict {built.verdict})"
    )
    sigs = [
        s
        for s, on in (
            ("Ed25519 manifest.json.sig + attestation.intoto.json", signer.key is not None),
            ("GPG manifest.json.asc", signer.gpg_key is not None),
        )
        if on
    ]
    typer.echo(f"signatures: {', '.join(sigs) if sigs else 'NONE (unsigned, evidence-grade)'}")
    if signer.key is not None:
        typer.echo(f"verify with: {VERIFY_HELP.format(pub=pub, pack=built.path)}")
    else:
        typer.echo(f"verify with: editproof verify {built.path}")


def run(**params: Any) -> None:
    """Run the suite, then build a signed proof pack of it (a FAIL verdict is packed too)."""
    from editproof.pack.archive import check_archive_target
    from editproof.pack.build import build_pack, check_target
    from editproof.suite.runner import default_out
    from editproof.suite.suites import get_suite

    pack = {p.name: params.pop(p.name) for p in _PACK_PARAMS}
    quiet = params.pop("quiet")
    opts = suite_cmd.suite_options(**params)
    if opts.mode == "calibrate-only":
        raise UsageError("--calibrate-only compiles no verdict, so there is nothing to pack")
    if opts.out is None:
        opts.out = default_out(get_suite(opts.suite).name)
    pack_dir = pack["pack_dir"] or opts.out / "proof_pack"
    signer, lines = _signer(pack["sign_key"], pack["no_sign"], pack["gpg_key"])
    check_target(pack_dir)
    if pack["archive"]:
        check_archive_target(pack_dir)
    for line in lines:
        typer.echo(line, err=True)
    outcome = suite_cmd.run_and_print(opts, quiet=quiet)
    built = build_pack(outcome.run_dir, pack_dir, signer)
    _report_built(built, _public_key_path(pack["sign_key"], signer), signer)
    if pack["archive"]:
        _archive(built, signer)
    if outcome.verdict != "PASS":
        typer.echo(f"the final verdict is {outcome.verdict}: this pack is evidence, not proof")
        raise typer.Exit(EXIT_GATES_FAILED)


_SUITE_PARAMS = list(inspect.signature(suite_cmd.suite, eval_str=True).parameters.values())
run.__signature__ = inspect.Signature([*_SUITE_PARAMS, *_PACK_PARAMS])  # type: ignore[attr-defined]
run.__annotations__ = {p.name: p.annotation for p in [*_SUITE_PARAMS, *_PACK_PARAMS]}


def pack(
    run_dir: Path = typer.Argument(..., help="A finished suite run directory."),
    pack_dir: Path | None = _PACK_PARAMS[0].default,
    sign_key: Path | None = _PACK_PARAMS[1].default,
    no_sign: bool = _PACK_PARAMS[2].default,
    gpg_key: str | None = _PACK_PARAMS[3].default,
    archive: bool = _PACK_PARAMS[4].default,
) -> None:
    """Build the proof pack of a finished suite run."""
    from editproof.pack.archive import check_archive_target
    from editproof.pack.build import build_pack, check_run, check_target
    from editproof.suite.results import read_tasks

    target = pack_dir or run_dir / "proof_pack"
    signer, lines = _signer(sign_key, no_sign, gpg_key)
    check_target(target)
    if archive:
        check_archive_target(target)
    check_run(run_dir)
    if (run_dir / "state" / "state.sqlite").is_file():
        open_tasks = [t for t in read_tasks(run_dir) if t.status in ("pending", "running")]
        if open_tasks:
            raise UsageError(
                f"{run_dir} is not finished ({len(open_tasks)} task(s) pending or "
                "running); finish it with `editproof suite --resume` first"
            )
    for line in lines:
        typer.echo(line, err=True)
    built = build_pack(run_dir, target, signer)
    typer.echo(f"FINAL VERDICT: {built.verdict}")
    _report_built(built, _public_key_path(sign_key, signer), signer)
    if archive:
        _archive(built, signer)


def _archive(built: Any, signer: Any) -> None:
    from editproof.pack.archive import write_archive

    key = signer.key.public_key() if signer.key is not None else None
    path = write_archive(built.path, key)
    typer.echo(f"archive: {path} ({path.stat().st_size} bytes; verify reads it as it is)")


def _fingerprint(value: str | None, gpg: bool) -> str | None:
    import re

    if value is None:
        return None
    v = value.replace(" ", "")
    if gpg:
        if not re.fullmatch(r"[0-9A-Fa-f]{40}", v):
            raise UsageError(f"--gpg-fingerprint '{value}': expected 40 hex digits")
        return v.upper()
    v = v.lower() if v.lower().startswith("sha256:") else "sha256:" + v.lower()
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", v):
        raise UsageError(f"--fingerprint '{value}': expected sha256:<64 hex>")
    return v


def verify(
    pack_path: Path = typer.Argument(
        ..., metavar="PACK", help="A proof pack directory or .proofpack.tar."
    ),
    strict: bool = typer.Option(
        False, "--strict", help="Proof policy: trusted signature, no extras [$PACK_STRICT_MODE=1]."
    ),
    key: Path | None = typer.Option(None, "--key", help="Trusted Ed25519 public key (PEM)."),
    fingerprint: str | None = typer.Option(
        None, "--fingerprint", help="Trusted Ed25519 key fingerprint (sha256:<hex>)."
    ),
    gpg_fingerprint: str | None = typer.Option(
        None, "--gpg-fingerprint", help="Trusted GPG key fingerprint (40 hex)."
    ),
    require_pass: bool = typer.Option(False, "--require-pass", help="Exit 8 unless PASS."),
    as_json: bool = typer.Option(False, "--json", help="Print every check as JSON."),
) -> None:
    """Verify a proof pack offline. Exit 0 ok, 2 usage, 3 missing pack or files, 4 manifest
    schema, 5 signature, 6 integrity, 7 report verification, 8 verdict not PASS."""
    from editproof.pack import keys
    from editproof.pack.policy import VerifyPolicy
    from editproof.pack.verify import verify_pack

    strict = strict or os.environ.get("PACK_STRICT_MODE") == "1"
    make = VerifyPolicy.strict if strict else VerifyPolicy.default
    policy = make(
        key=keys.load_public(key) if key is not None else None,
        fingerprint=_fingerprint(fingerprint, gpg=False),
        gpg_fingerprint=_fingerprint(gpg_fingerprint, gpg=True),
        require_pass=require_pass,
    )
    result = verify_pack(pack_path, policy)
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
    else:
        for c in result.checks:
            if c.outcome != "skip":
                typer.echo(f"{c.outcome.upper():<5} {c.phase}: {c.name}: {c.detail}")
    code = result.exit_code
    if code:
        bad = next(c for c in result.checks if c.outcome == "fail")
        typer.echo(f"error: {bad.phase}: {bad.detail}", err=True)
        raise typer.Exit(code)
    grade = "proof-grade" if strict and result.verdict == "PASS" else "evidence-grade"
    if not as_json:
        typer.echo(
            f"VERIFIED ({policy.name} policy, {grade}; verdict {result.verdict}; "
            f"{len(result.warnings)} warning(s))"
        )


def inspect_pack(
    pack_path: Path = typer.Argument(
        ..., metavar="PACK", help="A proof pack directory or .proofpack.tar."
    ),
) -> None:
    """Summarise a pack's manifest WITHOUT checking it (use `verify` for that)."""
    from editproof.errors import InvalidInputError
    from editproof.pack.manifest import ManifestError, parse_manifest
    from editproof.pack.source import peek

    try:
        m = parse_manifest(peek(pack_path, "manifest.json"))
    except ManifestError as exc:
        raise InvalidInputError(str(exc)) from None
    sigs = [n for n, s in (("ed25519", m.signatures.ed25519), ("gpg", m.signatures.gpg)) if s]
    typer.echo("NOT VERIFIED — a summary of what the manifest claims; run `editproof verify`")
    typer.echo(f"verdict:    {m.verdict} (suite {m.suite})")
    for md in m.models:
        typer.echo(f"model:      {md.model} weights sha256 {md.weight_sha256 or '?'}")
    typer.echo(
        f"files:      {len(m.files)} ({sum(f.size for f in m.files)} bytes), {m.reports} reports"
    )
    typer.echo(
        f"signatures: {', '.join(sigs) or 'none (unsigned)'}; "
        f"key {m.signing_key_fingerprint or '-'}"
    )
    typer.echo(
        f"built:      {m.generated_at} by editproof {m.tool.version} "
        f"(source {m.tool.source_revision or 'unknown'})"
    )


def keygen(
    directory: Path | None = typer.Argument(
        None, metavar="[DIR]", help="Where to write the key pair [$EDITPROOF_HOME/keys]."
    ),
) -> None:
    """Write a new Ed25519 key pair (private key mode 0600); never overwrites."""
    from editproof.pack import keys

    priv, pub, fp = keys.generate(directory or keys.default_key_dir())
    typer.echo(f"private key: {priv} (mode 0600; keep it secret)")
    typer.echo(f"public key:  {pub} (give this to whoever verifies your packs)")
    typer.echo(f"fingerprint: {fp}")
