#!/usr/bin/env bash
# The seed's run_suite.sh: runs a suite WITHOUT building a proof pack. A thin translation of
# the seed's flags and PACK_* / MODEL_1..8 variables into `editproof suite`; all logic lives
# in the Python package. Exit codes are editproof's (0 PASS, 1 FAIL, 2 usage, ...).
set -euo pipefail

# shellcheck source=_common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/_common.sh"

usage() {
  cat <<'USAGE'
Usage: run_suite.sh [--suite NAME] [--models CSV] [--net 0|1] [--out DIR]
                    [--determinism strict|throughput] [--repeats N] [--scenario-ids CSV]
                    [--calibrate-only | --run-only | --errors-only] [--resume] [--help]
Environment: PACK_SUITE (subset), PACK_NET (0), PACK_OUTPUT_DIR / OUTPUT_DIR, PACK_DETERMINISM,
PACK_REPEATS, PACK_MODELS_CSV, PACK_SCENARIO_IDS, MODEL_1..MODEL_8, PACK_TUNED_EDIT_PARAMS_FILE,
PACK_MODEL_REVISIONS_FILE. Runs the suite only; run_pack.sh also builds the proof pack.
USAGE
}

suite_defaults

while [[ $# -gt 0 ]]; do
  suite_flag "$@"
  if [[ $taken -gt 0 ]]; then shift "$taken"; continue; fi
  case "$1" in
    --calibrate-only|--run-only|--errors-only) extra+=("$1"); shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) echo "error: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
check_run_args "$net" "$repeats" "$@"

suite_args suite
echo "WARNING: This runs the suite WITHOUT creating a proof pack." >&2
exec "${cmd[@]}" "${args[@]}" "${extra[@]}"
