# Shared by run_pack.sh, run_suite.sh and verify_pack.sh (sourced, never run): which
# editproof to call, the suite flags both run scripts take, and the checks of the seed's
# flags. No logic beyond translation.

# cmd: $EDITPROOF, else the repository's .venv, else `editproof` on PATH, else the module.
_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if [[ -n "${EDITPROOF:-}" ]]; then
  read -r -a cmd <<<"$EDITPROOF"
elif [[ -x "$_root/.venv/bin/editproof" ]]; then
  cmd=("$_root/.venv/bin/editproof")
elif command -v editproof >/dev/null 2>&1; then
  cmd=(editproof)
else
  cmd=(python3 -m editproof)
fi

need_value() {
  if [[ $# -lt 2 || -z "$2" || "$2" == --* ]]; then
    echo "error: $1 needs a value (see --help)" >&2
    exit 2
  fi
}

# check_run_args NET REPEATS REST...: the checks run_pack.sh and run_suite.sh share.
check_run_args() {
  local net="$1" repeats="$2"
  shift 2
  if [[ $# -gt 0 ]]; then
    echo "error: unexpected arguments after --: $*" >&2
    exit 2
  fi
  if [[ "$net" != "0" && "$net" != "1" ]]; then
    echo "error: --net must be 0 or 1, got '$net'" >&2
    exit 2
  fi
  if ! [[ "$repeats" =~ ^[0-9]+$ ]]; then
    echo "error: --repeats must be a non-negative integer, got '$repeats'" >&2
    exit 2
  fi
}

# suite_defaults: the flags run_pack.sh and run_suite.sh both take, from the seed's variables.
suite_defaults() {
  suite="${PACK_SUITE:-subset}"
  net="${PACK_NET:-0}"
  out="${PACK_OUTPUT_DIR:-${OUTPUT_DIR:-}}"
  determinism="${PACK_DETERMINISM:-throughput}"
  repeats="${PACK_REPEATS:-0}"
  models="${PACK_MODELS_CSV:-${PACK_MODELS:-}}"
  scenario_ids="${PACK_SCENARIO_IDS:-}"
  extra=()
}

# suite_flag ARGS...: when $1 is one of those flags, store it and set `taken` to the number
# of arguments it used (shift that many); otherwise taken=0.
suite_flag() {
  taken=2
  case "$1" in
    --suite) need_value "$@"; suite="$2" ;;
    --models) need_value "$@"; models="$2" ;;
    --net) need_value "$@"; net="$2" ;;
    --out) need_value "$@"; out="$2" ;;
    --determinism) need_value "$@"; determinism="$2" ;;
    --repeats) need_value "$@"; repeats="$2" ;;
    --scenario-ids) need_value "$@"; scenario_ids="$2" ;;
    --resume) extra+=("$1"); taken=1 ;;
    *) taken=0 ;;
  esac
}

# suite_args COMMAND: `editproof COMMAND` with those flags, into the array `args`.
suite_args() {
  args=("$1" --suite "$suite" --net "$net" --determinism "$determinism" --repeats "$repeats")
  if [[ -n "$out" ]]; then args+=(--out "$out"); fi
  if [[ -n "$models" ]]; then args+=(--models "$models"); fi
  if [[ -n "$scenario_ids" ]]; then args+=(--scenario-ids "$scenario_ids"); fi
}
