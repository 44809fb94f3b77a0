# Shared by run_pack.sh, run_suite.sh and verify_pack.sh (sourced, never run): which
# editproof to call, and the checks of the seed's flags. No logic beyond translation.

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
