"""``attestation.intoto.json``: DSSE PAE against the spec's own test vector, the Statement the
builder writes, and each attack with its exit code (5 signature, 6 binding)."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from editproof.pack import attestation, keys
from editproof.pack.manifest import parse_manifest
from tests.cli._cli import Result
from tests.pack.test_attacks import default, reseal, strict

Cli = Callable[..., Result]
ATT = "attestation.intoto.json"

# secure-systems-lab/dsse protocol.md, "Test Vectors" (ECDSA P-256, SHA-256, raw r||s).
SPEC_TYPE = "http://example.com/HelloWorld"
SPEC_BODY = b"hello world"
SPEC_PAE = b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
SPEC_X = 46950820868899156662930047687818585632848591499744589407958293238635476079160
SPEC_Y = 5640078356564379163099075877009565129882514886557779369047442380624545832820
SPEC_ENVELOPE = {
    "payload": "aGVsbG8gd29ybGQ=",
    "payloadType": "http://example.com/HelloWorld",
    "signatures": [
        {
            "sig": "A3JqsQGtVsJ2O2xqrI5IcnXip5GToJ3F+FnZ+O88SjtR6rDAajabZKciJTfUiHqJPcIAriEGAHTVeCUjW2JIZA=="
        }
    ],
}


def test_pae_is_the_spec_vector() -> None:
    assert attestation.pae(SPEC_TYPE, SPEC_BODY) == SPEC_PAE
    assert attestation.pae("t", b"") == b"DSSEv1 1 t 0 "
    assert attestation.pae("\u00e9", b"x") == "DSSEv1 2 \u00e9 1 x".encode()  # bytes, not chars


def test_spec_example_envelope_verifies_over_our_pae() -> None:
    public = ec.EllipticCurvePublicNumbers(SPEC_X, SPEC_Y, ec.SECP256R1()).public_key()
    raw = base64.b64decode(SPEC_ENVELOPE["signatures"][0]["sig"])  # type: ignore[index]
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    body = attestation._b64(str(SPEC_ENVELOPE["payload"]), "payload")
    assert body == SPEC_BODY
    public.verify(der, attestation.pae(str(SPEC_ENVELOPE["payloadType"]), body),
                  ec.ECDSA(hashes.SHA256()))  # fmt: skip
    with pytest.raises(InvalidSignature):
        public.verify(der, attestation.pae(SPEC_TYPE, b"hello world!"), ec.ECDSA(hashes.SHA256()))


def test_url_safe_base64_is_accepted() -> None:
    data = bytes(range(250, 256)) * 3
    assert attestation._b64(base64.urlsafe_b64encode(data).decode().rstrip("="), "x") == data


def envelope(pack: Path) -> dict[str, Any]:
    return json.loads((pack / ATT).read_text())


def statement(env: dict[str, Any]) -> dict[str, Any]:
    return json.loads(base64.b64decode(env["payload"]))


def test_pack_carries_a_signed_statement(pass_run: Path, keypair: tuple[Path, Path]) -> None:
    pack = pass_run / "proof_pack"
    data = (pack / "manifest.json").read_bytes()
    m = json.loads(data)
    env = envelope(pack)
    assert env["payloadType"] == "application/vnd.in-toto+json"
    assert [s["keyid"] for s in env["signatures"]] == [m["signing_key_fingerprint"]]
    st = statement(env)
    assert st["_type"] == "https://in-toto.io/Statement/v1"
    contract = Path(__file__).resolve().parents[2] / "contracts"
    schema = json.loads((contract / "proof_pack_attestation_statement.schema.json").read_text())
    jsonschema.validate(st, schema)
    assert st["predicateType"] == "https://editproof.dev/proof-pack/v1"
    assert st["subject"] == [
        {"name": x["model"], "digest": {"sha256": x["weight_sha256"]}} for x in m["models"]
    ]
    pred = st["predicate"]
    assert pred["manifest"] == {"path": "manifest.json", "sha256": hashlib.sha256(data).hexdigest()}
    assert (pred["verdict"], pred["suite"], pred["tool"]["version"]) == (
        m["verdict"], m["suite"], m["tool"]["version"],
    )  # fmt: skip
    assert pred["counts"]["reports"] == m["reports"]
    assert ATT not in {f["path"] for f in m["files"]}  # it binds the manifest: never listed
    body = base64.b64decode(env["payload"])
    sig = base64.b64decode(env["signatures"][0]["sig"])
    keys.load_public(keypair[1]).verify(sig, attestation.pae(env["payloadType"], body))


def test_securesystemslib_dsse_accepts_it(pass_run: Path, keypair: tuple[Path, Path]) -> None:
    dsse = pytest.importorskip("securesystemslib.dsse")
    from cryptography.hazmat.primitives import serialization
    from securesystemslib.signer import SSlibKey

    pack = pass_run / "proof_pack"
    public = keys.load_public(keypair[1])
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    key = SSlibKey(keys.fingerprint(public), "ed25519", "ed25519", {"public": raw.hex()})
    env = dsse.Envelope.from_dict(envelope(pack))
    assert key.keyid in env.verify([key], 1)
    assert json.loads(env.payload) == statement(envelope(pack))
    forged = envelope(pack)
    st = statement(forged)
    st["predicate"]["verdict"] = "FAIL"
    forged["payload"] = base64.b64encode(json.dumps(st).encode()).decode()
    with pytest.raises(Exception, match=r"(?i)verif|threshold"):
        dsse.Envelope.from_dict(forged).verify([key], 1)


# --- attacks -----------------------------------------------------------------------------------


def test_tampered_payload(cli: Cli, pack: Path, keypair: tuple[Path, Path]) -> None:
    env = envelope(pack)
    st = statement(env)
    st["predicate"]["verdict"] = "FAIL"
    env["payload"] = base64.b64encode(json.dumps(st).encode()).decode()
    (pack / ATT).write_text(json.dumps(env))
    assert default(cli, pack) == 5
    assert strict(cli, pack, keypair[1]) == 5


def test_attestation_swapped_from_another_pack(cli: Cli, pack: Path, fail_pack: Path,
                                               keypair: tuple[Path, Path]) -> None:  # fmt: skip
    shutil.copy(fail_pack / ATT, pack / ATT)  # same key, valid signature, other manifest
    res = cli("verify", str(pack))
    assert res.code == 6 and "attestation.intoto.json: it binds manifest sha256" in res.err
    assert strict(cli, pack, keypair[1]) == 6


def _resign(pack: Path, private: Path, edit: Callable[[dict[str, Any]], None],
            keyid: str | None = None) -> None:  # fmt: skip
    """A Statement about this pack, edited, signed by ``private`` (keyid overridable)."""
    key = keys.load_private(private)
    data = (pack / "manifest.json").read_bytes()
    st = attestation.statement(parse_manifest(data), data).model_dump(mode="json", by_alias=True)
    edit(st)
    body = json.dumps(st).encode()
    sig = keys.sign(key, attestation.pae(attestation.PAYLOAD_TYPE, body))
    env = {"payloadType": attestation.PAYLOAD_TYPE, "payload": base64.b64encode(body).decode(),
           "signatures": [{"keyid": keyid or keys.fingerprint(key.public_key()),
                           "sig": base64.b64encode(sig).decode()}]}  # fmt: skip
    (pack / ATT).write_text(json.dumps(env))


def test_wrong_key(cli: Cli, pack: Path, keypair: tuple[Path, Path],
                   other_keypair: tuple[Path, Path]) -> None:  # fmt: skip
    ours = keys.fingerprint(keys.load_public(keypair[1]))
    _resign(pack, other_keypair[0], lambda st: None)  # their keyid
    assert default(cli, pack) == 5
    assert strict(cli, pack, keypair[1]) == 5
    _resign(pack, other_keypair[0], lambda st: None, keyid=ours)  # our keyid, their signature
    assert default(cli, pack) == 5
    assert strict(cli, pack, keypair[1]) == 5


def test_honest_resign_still_verifies(cli: Cli, pack: Path, keypair: tuple[Path, Path]) -> None:
    _resign(pack, keypair[0], lambda st: None)  # the control for the two tests below
    assert strict(cli, pack, keypair[1]) == 0


@pytest.mark.parametrize(
    "edit",
    [
        lambda st: st["subject"][0]["digest"].update(sha256="0" * 64),
        lambda st: st["subject"].append({"name": "other", "digest": {"sha256": "1" * 64}}),
        lambda st: st["predicate"].update(verdict="FAIL"),
        lambda st: st["predicate"]["manifest"].update(sha256="2" * 64),
    ],
    ids=["subject-digest", "extra-subject", "verdict", "manifest-digest"],
)
def test_signed_statement_about_something_else(cli: Cli, pack: Path, keypair: tuple[Path, Path],
                                               edit: Callable[[dict[str, Any]], None]) -> None:  # fmt: skip
    _resign(pack, keypair[0], edit)
    assert default(cli, pack) == 6
    assert strict(cli, pack, keypair[1]) == 6


def test_not_an_envelope(cli: Cli, pack: Path, keypair: tuple[Path, Path]) -> None:
    (pack / ATT).write_text('{"payloadType": "application/vnd.in-toto+json", "payload": "e30="}')
    assert default(cli, pack) == 5
    (pack / ATT).write_text("{}{")
    assert strict(cli, pack, keypair[1]) == 5


def test_missing_attestation(cli: Cli, pack: Path, keypair: tuple[Path, Path]) -> None:
    (pack / ATT).unlink()
    res = cli("verify", str(pack))
    assert res.code == 0 and "WARN  signature: attestation" in res.out
    assert strict(cli, pack, keypair[1]) == 5  # strict: a signed pack must carry it


def test_unsigned_pack_says_it_has_none(cli: Cli, pack: Path) -> None:
    reseal(pack)
    res = cli("verify", str(pack))
    assert res.code == 0 and "attestation: none" in res.out
    assert not (pack / ATT).exists()


def test_manifest_cannot_list_the_attestation(cli: Cli, pack: Path) -> None:
    from tests.pack.test_attacks import manifest, write_manifest

    m = manifest(pack)
    data = (pack / ATT).read_bytes()
    m["files"].append({"path": ATT, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    write_manifest(pack, m)
    res = cli("verify", str(pack))
    assert res.code == 4 and "a control file cannot be listed" in res.err
