"""The pack's ``README.md``: what is inside, what proof-grade means, how to verify it with
editproof and with stock tools."""

from __future__ import annotations

from editproof.pack.manifest import Signatures


def render_readme(
    *, verdict: str, suite: str, models: list[str], signatures: Signatures, reports: int
) -> str:
    ed, gp = signatures.ed25519, signatures.gpg
    if ed and gp:
        signed = (
            "an Ed25519 signature (`manifest.json.sig`) and a GPG signature (`manifest.json.asc`)"
        )
    elif ed:
        signed = "an Ed25519 signature (`manifest.json.sig`) and no GPG signature"
    elif gp:
        signed = "a GPG signature (`manifest.json.asc`) and no Ed25519 signature"
    else:
        signed = "NO signature: it is evidence-grade at most"
    lines = [
        "# editproof proof pack",
        "",
        f"**FINAL VERDICT: {verdict}** — suite `{suite}`, {len(models)} model(s), {reports} "
        "evaluation report(s).",
        "",
        f"This pack has {signed}.",
    ]
    if ed:
        lines.append(
            f"Ed25519 key fingerprint: `{ed.fingerprint}` (sha256 of the 32 raw public-key bytes)."
            " `attestation.intoto.json` states the verdict about the model weights as an in-toto"
            " Statement (DSSE envelope, same key) that binds this manifest's sha256."
        )
    if gp:
        lines.append(f"GPG key fingerprint: `{gp.fingerprint}`.")
    lines += [
        "",
        "## Proof-grade",
        "",
        "Treat this pack as proof only when all three hold: the manifest is **signed** by a key "
        "you obtained out of band, it passes **strict** verification, and the final verdict is "
        "**PASS**. Otherwise it is evidence: integrity-checked and recomputable, not attested. "
        "A FAIL verdict is still packed, because it is evidence too.",
        "",
        "## What is inside",
        "",
        "- `results/` — `final_verdict.json` / `.txt`, the four summaries, `detection_matrix.json`"
        " (and determinism repeats, records and JUnit files when the run wrote them)",
        "- `certs/<model>/<scenario>/run_<n>/` — `evaluation.report.json` (with every raw "
        "per-window number), `evaluation.html`, `verify.json` (its recomputation at pack time)",
        "- `metadata/` — model revisions and weight digests, effective scenarios, verdict inputs,"
        " presets, tuned params, suite config, environment, tool version and source revision",
        "- `index.html` — the verdict and every scenario run, linked",
        "- `checksums.sha256` — coreutils format; `manifest.json` — every file's path, size and "
        "sha256, the checksums file's digest, model digests, suite parameters; the signatures "
        "cover the manifest bytes, hence every file",
        "",
        "## Verify",
        "",
        "With editproof (core install, no torch needed), recomputing every report and the verdict:",
        "",
        "```bash",
        "editproof verify --strict --key TRUSTED_PUB.pem .   # exit 0 = valid; add --require-pass",
        "```",
        "",
        "With stock tools, from inside this directory:",
        "",
        "```bash",
        "sha256sum -c checksums.sha256                    # every listed file is intact",
        "sha256sum checksums.sha256      # must equal checksums_sha256_digest in manifest.json",
    ]
    if ed:
        lines.append(
            "openssl pkeyutl -verify -rawin -pubin -inkey TRUSTED_PUB.pem "
            "-in manifest.json -sigfile manifest.json.sig"
        )
    if gp:
        lines.append("gpg --verify manifest.json.asc manifest.json")
    lines += [
        "```",
        "",
        "`metadata/signing_key.pub.pem` is a copy of the signer's public key: a hint to compare "
        "with the key you trust, never a reason to trust the pack. `sha256sum -c` ignores files "
        "that are not listed; `editproof verify --strict` rejects them.",
        "",
    ]
    return "\n".join(lines)
