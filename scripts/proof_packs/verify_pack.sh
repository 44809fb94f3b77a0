#!/usr/bin/env bash
# The seed's verify_pack.sh: `editproof verify` on a proof pack. A thin translation of the
# seed's flags and PACK_STRICT_MODE; all logic lives in the Python package. Exit codes are
# `editproof verify`'s: 0 ok, 2 usage, 3 missing, 4 schema, 5 signature, 6 integrity,
# 7 report verification, 8 verdict not PASS (--require-pass).
set -euo pipefail

# shellcheck source=_common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/_common.sh"

usage() {
  cat <<'USAGE'
Usage: verify_pack.sh --pack DIR [--strict] [--key PUB.pem | --fingerprint FP]
                      [--gpg-fingerprint FP] [--require-pass] [--json] [--help]
Environment: PACK_STRICT_MODE=1 (same as --strict), PACK_VERIFY_KEY (a trusted public key),
PACK_REQUIRE_PASS=1 (same as --require-pass).
USAGE
}

pack=""
args=(verify)
[[ -n "${PACK_VERIFY_KEY:-}" ]] && args+=(--key "$PACK_VERIFY_KEY")
[[ "${PACK_REQUIRE_PASS:-0}" == "1" ]] && args+=(--require-pass)

while [[ $# -gt 0 ]]; do
  case "$1" in
    --pack) need_value "$@"; pack="$2"; shift 2 ;;
    --key|--fingerprint|--gpg-fingerprint) need_value "$@"; args+=("$1" "$2"); shift 2 ;;
    --strict|--require-pass|--json) args+=("$1"); shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "error: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
if [[ -z "$pack" ]]; then
  echo "error: --pack DIR is required (see --help)" >&2
  exit 2
fi
# PACK_STRICT_MODE=1 is read by `editproof verify` itself.
exec "${cmd[@]}" "${args[@]}" "$pack"
