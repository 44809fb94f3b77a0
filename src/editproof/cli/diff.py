"""``editproof diff PACK_A PACK_B``: verify both packs, then compare them run by run.

Exit 0 no regression (or nothing to fail on), 1 regression (``--fail-on regression``, the
default) or any change (``--fail-on change``); a pack that does not verify exits with its
``verify`` code (3-7) after one ``error:`` line naming the pack; 2 usage.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import typer

from editproof.errors import UsageError

FailOn = Literal["regression", "change", "never"]


def _pick_key(pack: Path, candidates: list[Any]) -> Any:
    """The ``--key`` whose fingerprint the pack's manifest declares (else the first: the
    verifier then says the pack was not signed by it)."""
    from editproof.errors import EditproofError
    from editproof.pack import keys, strictjson
    from editproof.pack.source import peek

    if len(candidates) <= 1:
        return candidates[0] if candidates else None
    try:
        declared = strictjson.loads(peek(pack, "manifest.json")).get("signing_key_fingerprint")
    except (EditproofError, strictjson.StrictJSONError, AttributeError):
        declared = None
    return next((k for k in candidates if keys.fingerprint(k) == declared), candidates[0])


def _verified(label: str, pack: Path, policy_of: Any, candidates: list[Any]) -> Any:
    from editproof.pack.diff import PackSide, diff_input
    from editproof.pack.verify import verify_pack

    result = verify_pack(pack, policy_of(key=_pick_key(pack, candidates)))
    if result.exit_code:
        bad = next(c for c in result.checks if c.outcome == "fail")
        typer.echo(
            f"error: pack {label} ({pack}) does not verify: {bad.phase}: {bad.detail}", err=True
        )
        raise typer.Exit(result.exit_code)
    m = result.manifest
    assert m is not None and result.manifest_sha256 is not None
    side = PackSide(
        pack=str(pack),
        kind=result.kind,
        verdict=m.verdict,
        suite=m.suite,
        tool_version=m.tool.version,
        tool_source_revision=m.tool.source_revision,
        manifest_sha256=result.manifest_sha256,
        generated_at=m.generated_at,
        signatures=result.signatures,
    )
    return diff_input(side, m, result.files)


def diff(
    pack_a: Path = typer.Argument(..., metavar="PACK_A", help="The earlier pack (dir or .tar)."),
    pack_b: Path = typer.Argument(..., metavar="PACK_B", help="The later pack (dir or .tar)."),
    as_json: bool = typer.Option(False, "--json", help="Print the comparison as JSON."),
    fail_on: str = typer.Option(
        "regression", "--fail-on", help="Exit 1 on: regression (default), change, never."
    ),
    strict: bool = typer.Option(
        False, "--strict", help="Verify both packs under the strict policy [$PACK_STRICT_MODE=1]."
    ),
    key: list[Path] = typer.Option(
        [], "--key", help="Trusted Ed25519 public key (PEM); repeat for two signers."
    ),
) -> None:
    """Compare two proof packs scenario by scenario, after verifying both."""
    from editproof.pack import keys
    from editproof.pack.diff import diff_packs
    from editproof.pack.policy import VerifyPolicy

    if fail_on not in ("regression", "change", "never"):
        raise UsageError(f"--fail-on '{fail_on}': expected regression, change or never")
    strict = strict or os.environ.get("PACK_STRICT_MODE") == "1"
    policy_of = VerifyPolicy.strict if strict else VerifyPolicy.default
    candidates = [keys.load_public(k) for k in key]
    a = _verified("A", pack_a, policy_of, candidates)
    b = _verified("B", pack_b, policy_of, candidates)
    result = diff_packs(a, b)
    if as_json:
        typer.echo(json.dumps(result.model_dump(mode="json"), indent=2))
    else:
        from editproof.cli._diff_view import print_diff

        print_diff(result)
    failed = (fail_on == "regression" and result.regression) or (
        fail_on == "change" and result.changed
    )
    if failed:
        raise typer.Exit(1)
