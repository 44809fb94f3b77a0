"""anchors.md §B.4, one attack per test on a real pack, each with its exact exit code.

Codes: 3 missing pack or files, 4 manifest schema, 5 signature, 6 integrity, 7 report
verification, 8 verdict not PASS. ``strict`` = ``--strict --key <trusted pub>``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.cli._cli import Result

REPORT = "certs/llama/nan_injection/run_1/evaluation.report.json"
CONTROL = ("manifest.json", "manifest.json.sig", "manifest.json.asc", "attestation.intoto.json",
           "checksums.sha256")  # fmt: skip
Cli = Callable[..., Result]


def default(cli: Cli, pack: Path, *extra: str) -> int:
    return cli("verify", str(pack), *extra).code


def strict(cli: Cli, pack: Path, pub: Path, *extra: str) -> int:
    return cli("verify", "--strict", "--key", str(pub), str(pack), *extra).code


def manifest(pack: Path) -> dict[str, Any]:
    return json.loads((pack / "manifest.json").read_text())


def write_manifest(pack: Path, data: dict[str, Any]) -> None:
    (pack / "manifest.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def reseal(pack: Path, sign_with: Path | None = None) -> None:
    """What an attacker without the key can do: recompute every digest, the checksums file and
    the manifest, and drop (or, with their own key, redo) the signatures."""
    from editproof.pack import attestation, keys
    from editproof.pack.manifest import parse_manifest

    m = manifest(pack)
    files = []
    for path in sorted(p for p in pack.rglob("*") if p.is_file() and not p.is_symlink()):
        rel = path.relative_to(pack).as_posix()
        if rel in CONTROL:
            continue
        data = path.read_bytes()
        files.append({"path": rel, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    sums = "".join(f"{f['sha256']}  {f['path']}\n" for f in files).encode()
    (pack / "checksums.sha256").write_bytes(sums)
    m["files"] = files
    m["checksums_sha256_digest"] = hashlib.sha256(sums).hexdigest()
    for sig in ("manifest.json.sig", "manifest.json.asc", "attestation.intoto.json"):
        (pack / sig).unlink(missing_ok=True)
    m["signatures"] = {"ed25519": None, "gpg": None}
    m["signing_key_fingerprint"] = None
    if sign_with is not None:
        key = keys.load_private(sign_with)
        fp = keys.fingerprint(key.public_key())
        (pack / "metadata/signing_key.pub.pem").write_bytes(keys.public_pem(key.public_key()))
        reseal(pack)  # the new public key's digest goes into the manifest
        m = manifest(pack)
        m["signatures"] = {"ed25519": {"file": "manifest.json.sig", "encoding": "raw",
                                       "fingerprint": fp,
                                       "public_key_hint": "metadata/signing_key.pub.pem"},
                           "gpg": None}  # fmt: skip
        m["signing_key_fingerprint"] = fp
        write_manifest(pack, m)
        data = (pack / "manifest.json").read_bytes()
        (pack / "manifest.json.sig").write_bytes(keys.sign(key, data))
        stmt = attestation.statement(parse_manifest(data), data)
        (pack / "attestation.intoto.json").write_bytes(attestation.envelope(stmt, key))
        return
    write_manifest(pack, m)


def tamper_report(pack: Path) -> None:
    path = pack / REPORT
    r = json.loads(path.read_text())
    r["primary_metric"]["ratio"] = 1.0 + (r["primary_metric"]["ratio"] or 0) / 7
    path.write_text(json.dumps(r, indent=2))


# --- honest packs ---------------------------------------------------------------------------


def test_honest_packs_pass_both_policies(cli: Cli, pack: Path, fail_pack: Path,
                                         keypair: tuple[Path, Path], gnupg: str) -> None:  # fmt: skip
    pub = keypair[1]
    assert default(cli, pack) == 0
    assert strict(cli, pack, pub) == 0
    assert strict(cli, pack, pub, "--require-pass") == 0  # proof-grade
    assert cli("verify", "--strict", "--gpg-fingerprint", gnupg, str(pack)).code == 0
    assert default(cli, fail_pack) == 0  # a FAIL verdict is valid evidence
    assert strict(cli, fail_pack, pub) == 0


def test_fail_verdict_with_require_pass_exits_8(cli: Cli, fail_pack: Path,
                                                keypair: tuple[Path, Path]) -> None:  # fmt: skip
    assert strict(cli, fail_pack, keypair[1], "--require-pass") == 8
    assert default(cli, fail_pack, "--require-pass") == 8


# --- B.4 attacks ------------------------------------------------------------------------------


def test_1_content_tamper(cli: Cli, pack: Path, keypair: tuple[Path, Path]) -> None:
    tamper_report(pack)
    assert default(cli, pack) == 6
    assert strict(cli, pack, keypair[1]) == 6


def test_2_checksum_file_regenerated(cli: Cli, pack: Path, keypair: tuple[Path, Path]) -> None:
    tamper_report(pack)
    lines = []
    for line in (pack / "checksums.sha256").read_text().splitlines():
        digest, path = line.split("  ", 1)
        if path == REPORT:
            digest = hashlib.sha256((pack / REPORT).read_bytes()).hexdigest()
        lines.append(f"{digest}  {path}\n")
    (pack / "checksums.sha256").write_text("".join(lines))
    assert default(cli, pack) == 6  # the manifest binds the checksums file's digest
    assert strict(cli, pack, keypair[1]) == 6


def test_2b_checksums_and_manifest_regenerated_signed_pack(
    cli: Cli, pack: Path, keypair: tuple[Path, Path]
) -> None:
    sig = (pack / "manifest.json.sig").read_bytes()
    m = manifest(pack)
    tamper_report(pack)
    reseal(pack)
    new = manifest(pack)
    new["signatures"], new["signing_key_fingerprint"] = (
        m["signatures"],
        m["signing_key_fingerprint"],
    )
    write_manifest(pack, new)
    (pack / "manifest.json.sig").write_bytes(sig)  # the old signature no longer matches
    assert default(cli, pack) == 5
    assert strict(cli, pack, keypair[1]) == 5


def test_2c_resealed_unsigned_lie_is_caught_by_recomputation(
    cli: Cli, pack: Path, keypair: tuple[Path, Path]
) -> None:
    tamper_report(pack)
    reseal(pack)
    assert default(cli, pack) == 7  # digests agree, the numbers do not
    assert strict(cli, pack, keypair[1]) == 5  # strict: no trusted signature


def test_3_extra_file(cli: Cli, pack: Path, keypair: tuple[Path, Path]) -> None:
    extra = pack / "certs/x/evaluation.report.json"
    extra.parent.mkdir(parents=True)
    shutil.copy(pack / REPORT, extra)
    res = cli("verify", str(pack))
    assert res.code == 0 and "WARN  integrity: extra files" in res.out
    assert strict(cli, pack, keypair[1]) == 6


def test_4_file_deleted(cli: Cli, pack: Path, keypair: tuple[Path, Path]) -> None:
    (pack / REPORT).unlink()
    assert default(cli, pack) == 3
    assert strict(cli, pack, keypair[1]) == 3


def test_4b_file_deleted_and_resealed(cli: Cli, pack: Path, keypair: tuple[Path, Path]) -> None:
    shutil.rmtree((pack / REPORT).parent)
    reseal(pack)
    assert default(cli, pack) == 7  # the verdict counts a report the pack no longer holds
    assert strict(cli, pack, keypair[1]) == 5


def test_4c_renamed_file(cli: Cli, pack: Path, keypair: tuple[Path, Path]) -> None:
    (pack / REPORT).rename(pack / REPORT.replace("evaluation.report", "renamed"))
    assert default(cli, pack) == 3
    assert strict(cli, pack, keypair[1]) == 3


@pytest.mark.parametrize(
    "bad", ["../x", "/etc/passwd", "C:\\x", "a/../../b", "a\\..\\b", "a/\u0000b", "./README.md"]
)
def test_5_path_traversal_in_manifest(cli: Cli, pack: Path, keypair: tuple[Path, Path],
                                      bad: str) -> None:  # fmt: skip
    m = manifest(pack)
    m["files"][0]["path"] = bad
    write_manifest(pack, m)
    assert default(cli, pack) == 4
    assert strict(cli, pack, keypair[1]) == 4


def test_6_symlink_final(cli: Cli, pack: Path, keypair: tuple[Path, Path], tmp_path: Path) -> None:
    outside = tmp_path / "secret.json"
    shutil.copy(pack / REPORT, outside)  # same bytes: only the link itself is wrong
    (pack / REPORT).unlink()
    (pack / REPORT).symlink_to(outside)
    assert default(cli, pack) == 6
    assert strict(cli, pack, keypair[1]) == 6


def test_7_symlink_intermediate(cli: Cli, pack: Path, keypair: tuple[Path, Path],
                                tmp_path: Path) -> None:  # fmt: skip
    moved = Path(shutil.move(pack / "certs", tmp_path / "elsewhere"))
    (pack / "certs").symlink_to(moved)
    assert default(cli, pack) == 6
    assert strict(cli, pack, keypair[1]) == 6


def test_6b_extra_symlink(cli: Cli, pack: Path, keypair: tuple[Path, Path]) -> None:
    (pack / "results" / "id_rsa").symlink_to("/etc/hostname")
    assert default(cli, pack) == 0  # not listed, never opened: a warning
    assert strict(cli, pack, keypair[1]) == 6


def test_8_special_file(cli: Cli, pack: Path, keypair: tuple[Path, Path]) -> None:
    os.mkfifo(pack / "results" / "fifo")
    assert default(cli, pack) == 0
    assert strict(cli, pack, keypair[1]) == 6


def test_8b_fifo_replaces_listed_file(cli: Cli, pack: Path, keypair: tuple[Path, Path]) -> None:
    (pack / REPORT).unlink()
    os.mkfifo(pack / REPORT)  # opening it for reading would block; the verifier must not
    assert default(cli, pack) == 6
    assert strict(cli, pack, keypair[1]) == 6


def test_9_hard_link(cli: Cli, pack: Path, keypair: tuple[Path, Path], tmp_path: Path) -> None:
    os.link(pack / REPORT, tmp_path / "outside.json")
    assert default(cli, pack) == 0
    assert strict(cli, pack, keypair[1]) == 6


def test_11_case_collision_in_manifest(cli: Cli, pack: Path, keypair: tuple[Path, Path]) -> None:
    m = manifest(pack)
    first = m["files"][0]["path"]
    shutil.copy(pack / first, pack / first.upper())
    m["files"].append({**m["files"][0], "path": first.upper()})
    write_manifest(pack, m)
    assert default(cli, pack) == 4
    assert strict(cli, pack, keypair[1]) == 4


def test_12_duplicate_keys_in_manifest(cli: Cli, pack: Path, keypair: tuple[Path, Path]) -> None:
    text = (pack / "manifest.json").read_text()
    (pack / "manifest.json").write_text(
        text.replace('"verdict": "PASS"', '"verdict": "FAIL", "verdict": "PASS"')
    )
    assert default(cli, pack) == 4
    assert strict(cli, pack, keypair[1]) == 4


def test_12b_duplicate_keys_in_verdict(cli: Cli, pack: Path, keypair: tuple[Path, Path]) -> None:
    path = pack / "results/final_verdict.json"
    path.write_text(
        path.read_text().replace('"verdict": "PASS"', '"verdict": "FAIL", "verdict": "PASS"', 1)
    )
    reseal(pack)
    assert default(cli, pack) == 7
    assert strict(cli, pack, keypair[1]) == 5


def test_12c_nan_in_manifest(cli: Cli, pack: Path) -> None:
    text = (pack / "manifest.json").read_text()
    (pack / "manifest.json").write_text(text.replace('"reports": 2', '"reports": NaN'))
    assert default(cli, pack) == 4


def test_13_signature_stripped(cli: Cli, pack: Path, keypair: tuple[Path, Path]) -> None:
    (pack / "manifest.json.sig").unlink()
    assert default(cli, pack) == 5  # the manifest says it is signed
    assert strict(cli, pack, keypair[1]) == 5


def test_13b_downgraded_to_unsigned(cli: Cli, pack: Path, keypair: tuple[Path, Path]) -> None:
    reseal(pack)  # no signatures, every digest consistent
    res = cli("verify", str(pack))
    assert res.code == 0 and "UNSIGNED" in res.out  # evidence-grade, said prominently
    assert strict(cli, pack, keypair[1]) == 5
    assert cli("verify", "--strict", str(pack)).code == 5


def test_14_key_substitution(cli: Cli, pack: Path, keypair: tuple[Path, Path],
                             other_keypair: tuple[Path, Path]) -> None:  # fmt: skip
    tamper_report(pack)
    reseal(pack, sign_with=other_keypair[0])  # attacker re-signs, ships their own key
    assert default(cli, pack) == 7  # the pack's key is only a hint; the numbers still lie
    assert strict(cli, pack, keypair[1]) == 5  # not signed by the key we trust
    assert cli("verify", "--strict", str(pack)).code == 5  # the key in the pack is not trust


def test_14b_wrong_key_and_fingerprint(cli: Cli, pack: Path,
                                       other_keypair: tuple[Path, Path]) -> None:  # fmt: skip
    assert strict(cli, pack, other_keypair[1]) == 5
    assert cli("verify", "--strict", "--fingerprint", "sha256:" + "0" * 64, str(pack)).code == 5


def test_14c_fingerprint_pins_the_pack_key(
    cli: Cli, pack: Path, keypair: tuple[Path, Path]
) -> None:
    from editproof.pack import keys

    fp = keys.fingerprint(keys.load_public(keypair[1]))
    assert cli("verify", "--strict", "--fingerprint", fp, str(pack)).code == 0


def test_16_manifest_edited(cli: Cli, pack: Path, keypair: tuple[Path, Path]) -> None:
    m = manifest(pack)
    m["suite_parameters"]["tier"] = "aggressive"
    write_manifest(pack, m)
    assert default(cli, pack) == 5
    assert strict(cli, pack, keypair[1]) == 5


def test_16b_signature_swapped(cli: Cli, pack: Path, fail_pack: Path,
                               keypair: tuple[Path, Path]) -> None:  # fmt: skip
    shutil.copy(fail_pack / "manifest.json.sig", pack / "manifest.json.sig")  # same key, other pack
    assert default(cli, pack) == 5
    assert strict(cli, pack, keypair[1]) == 5


def test_16c_mix_and_match(
    cli: Cli, pack: Path, fail_pack: Path, keypair: tuple[Path, Path]
) -> None:
    shutil.copy(fail_pack / "results/final_verdict.json", pack / "results/final_verdict.json")
    assert default(cli, pack) == 6
    assert strict(cli, pack, keypair[1]) == 6


def test_18_unknown_format_and_version(cli: Cli, pack: Path) -> None:
    m = manifest(pack)
    write_manifest(pack, {**m, "format": "proof-pack-v1"})
    assert default(cli, pack) == 4
    write_manifest(pack, {**m, "schema_version": 2})
    assert default(cli, pack) == 4
    write_manifest(pack, {**m, "surprise": True})
    assert default(cli, pack) == 4


def test_19_forged_verdict_in_unsigned_pack(cli: Cli, fail_pack: Path) -> None:
    path = fail_pack / "results/final_verdict.json"
    path.write_text(path.read_text().replace('"verdict": "FAIL"', '"verdict": "PASS"', 1))
    m = manifest(fail_pack)
    write_manifest(fail_pack, {**m, "verdict": "PASS"})
    reseal(fail_pack)
    res = cli("verify", str(fail_pack), "--require-pass")
    assert res.code == 7, res.out
    assert "recomputed from the pack's reports it is FAIL" in res.err


def test_19b_forged_summary_in_unsigned_pack(cli: Cli, pack: Path) -> None:
    path = pack / "results/guard_signal_summary.json"
    data = json.loads(path.read_text())
    data["schema_version"] = 1
    data["forged"] = True
    path.write_text(json.dumps(data))
    reseal(pack)
    assert default(cli, pack) == 7


def test_19c_forged_verify_json(cli: Cli, pack: Path) -> None:
    path = pack / REPORT.replace("evaluation.report.json", "verify.json")
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "checks": data["checks"] + 1}))
    reseal(pack)
    assert default(cli, pack) == 7


def test_truncated_file(cli: Cli, pack: Path, keypair: tuple[Path, Path]) -> None:
    data = (pack / REPORT).read_bytes()
    (pack / REPORT).write_bytes(data[: len(data) // 2])
    assert default(cli, pack) == 6
    assert strict(cli, pack, keypair[1]) == 6


def test_gpg_signature_tampered(cli: Cli, pack: Path, gnupg: str) -> None:
    asc = (pack / "manifest.json.asc").read_text().splitlines()
    mid = len(asc) // 2
    asc[mid] = asc[mid][:-4] + ("AAAA" if not asc[mid].endswith("AAAA") else "BBBB")
    (pack / "manifest.json.asc").write_text("\n".join(asc) + "\n")
    assert cli("verify", "--strict", "--gpg-fingerprint", gnupg, str(pack)).code == 5


def test_gpg_wrong_fingerprint(cli: Cli, pack: Path) -> None:
    assert cli("verify", "--strict", "--gpg-fingerprint", "A" * 40, str(pack)).code == 5


def test_missing_pack_and_manifest(cli: Cli, pack: Path, tmp_path: Path) -> None:
    assert default(cli, tmp_path / "nope") == 3
    (pack / "manifest.json").unlink()
    assert default(cli, pack) == 3


def test_usage_errors_exit_2(cli: Cli, pack: Path, tmp_path: Path) -> None:
    assert cli("verify", "--key", str(tmp_path / "none.pem"), str(pack)).code == 2
    assert cli("verify", "--fingerprint", "abc", str(pack)).code == 2
    assert cli("verify", "--bogus", str(pack)).code == 2


def test_strict_mode_env_and_json(cli: Cli, pack: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACK_STRICT_MODE", "1")
    res = cli("verify", "--json", str(pack))
    assert res.code == 5  # strict via the environment: no out-of-band key given
    data = json.loads(res.out)
    assert data["policy"] == "strict" and data["exit_code"] == 5
    phases = [c["phase"] for c in data["checks"]]
    assert phases[0] == "files present" and phases[-1] == "verdict"
    assert {c["outcome"] for c in data["checks"]} >= {"ok", "fail", "skip"}
