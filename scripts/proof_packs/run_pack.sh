#!/usr/bin/env bash
# The seed's run_pack.sh: runs a suite AND builds its proof pack (`editproof run`). A thin
# translation of the seed's flags and PACK_* / MODEL_1..8 variables; all logic lives in the
# Python package. Exit codes are editproof's (0 PASS, 1 FAIL, 2 usage, ...).
set -euo pipefail

# shellcheck source=_common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/_common.sh"

usage() {
  cat <<'USAGE'
Usage: run_pack.sh [--suite NAME] [--models CSV] [--net 0|1] [--out DIR] [--pack-dir DIR]
                   [--determinism strict|throughput] [--repeats N] [--scenario-ids CSV]
                   [--sign-key PEM | --no-sign] [--gpg-key ID] [--resume] [--help]
Environment: PACK_SUITE (subset), PACK_NET (0), PACK_OUTPUT_DIR / OUTPUT_DIR, PACK_DIR,
PACK_DETERMINISM, PACK_REPEATS, PACK_MODELS_CSV, PACK_SCENARIO_IDS, MODEL_1..MODEL_8,
PACK_TUNED_EDIT_PARAMS_FILE, PACK_SIGNING_KEY, PACK_GPG_KEY, PACK_GPG_SIGN (0 = no GPG).
USAGE
}

suite_defaults
pack_dir="${PACK_DIR:-}"
sign_key="${PACK_SIGNING_KEY:-}"

while [[ $# -gt 0 ]]; do
  suite_flag "$@"
  if [[ $taken -gt 0 ]]; then shift "$taken"; continue; fi
  case "$1" in
    --pack-dir) need_value "$@"; pack_dir="$2"; shift 2 ;;
    --sign-key) need_value "$@"; sign_key="$2"; shift 2 ;;
    --gpg-key) need_value "$@"; extra+=(--gpg-key "$2"); shift 2 ;;
    --no-sign) extra+=("$1"); shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) echo "error: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
check_run_args "$net" "$repeats" "$@"

suite_args run
[[ -n "$pack_dir" ]] && args+=(--pack-dir "$pack_dir")
[[ -n "$sign_key" ]] && args+=(--sign-key "$sign_key")
exec "${cmd[@]}" "${args[@]}" "${extra[@]}"
