#!/usr/bin/env bash
# Wall time of scripts/setup_repo.sh on a fresh clone: first into a new venv, then a second
# (idempotent) run on the ready tree. Targets: fresh < 180 s, second < 10 s on a 2-core machine.
#
# The clone is of the committed state (HEAD) and lives in a temporary directory with its own
# venv, so the repository's .venv and runners/ are never touched.
#
# Example:
#   benchmarks/bench_setup.sh               # pip's usual cache, as on a machine that installed before
#   benchmarks/bench_setup.sh --cold-cache  # an empty pip cache: every wheel is downloaded
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
FRESH_TARGET_S=180
SECOND_TARGET_S=10
COLD_CACHE=0
KEEP=0

usage() {
  cat <<EOF
Usage: benchmarks/bench_setup.sh [--cold-cache] [--keep]

Clones the repository (HEAD) into a temporary directory and times scripts/setup_repo.sh there:
a fresh run into a new venv, then a second run on the ready tree.

  --cold-cache  use an empty pip cache for the fresh run (default: pip's usual cache)
  --keep        keep the temporary clone, venv and logs (default: removed after a successful run)
EOF
}

while [[ $# -gt 0 ]]; do
  case $1 in
    --cold-cache) COLD_CACHE=1 ;;
    --keep) KEEP=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "bench_setup.sh: error: unknown option '$1'; fix: see --help" >&2; exit 1 ;;
  esac
  shift
done

now() {
  "$PYTHON" -c 'import time; print(time.time())'
}

seconds_since() {
  "$PYTHON" -c 'import sys, time; print("%.1f" % (time.time() - float(sys.argv[1])))' "$1"
}

# Runs setup_repo.sh in the clone, logging to $2; prints the elapsed seconds.
timed_setup() {
  local label=$1 log=$2 start elapsed
  start=$(now)
  if ! (cd "$WORK/repo" && ./scripts/setup_repo.sh --venv "$WORK/venv") >"$log" 2>&1; then
    echo "bench_setup.sh: error: the $label setup failed (log: $log); fix: read the log's last lines" >&2
    tail -n 20 "$log" >&2
    exit 1
  fi
  elapsed=$(seconds_since "$start")
  echo "$elapsed"
}

verdict() {
  "$PYTHON" -c 'import sys; print("within" if float(sys.argv[1]) < float(sys.argv[2]) else "OVER")' "$1" "$2"
}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench_setup.XXXXXX")
git clone --quiet "$REPO_ROOT" "$WORK/repo"
if [[ $COLD_CACHE == 1 ]]; then
  export PIP_CACHE_DIR=$WORK/pip-cache
  cache_label="empty pip cache"
else
  cache_label="pip's usual cache"
fi

echo "bench_setup: clone of $(git -C "$REPO_ROOT" rev-parse --short HEAD) in $WORK, $cache_label, $(getconf _NPROCESSORS_ONLN 2>/dev/null || echo '?') cores"
fresh=$(timed_setup fresh "$WORK/fresh.log")
second=$(timed_setup second "$WORK/second.log")
grep -q "nothing to install" "$WORK/second.log" || echo "bench_setup: warning: the second run installed packages (see $WORK/second.log)"

printf '%-42s %7s s  (target < %d s: %s)\n' "fresh setup (new venv, $cache_label):" "$fresh" \
  "$FRESH_TARGET_S" "$(verdict "$fresh" "$FRESH_TARGET_S")"
printf '%-42s %7s s  (target < %d s: %s)\n' "second run (idempotent):" "$second" \
  "$SECOND_TARGET_S" "$(verdict "$second" "$SECOND_TARGET_S")"

if [[ $KEEP == 1 ]]; then
  echo "bench_setup: kept $WORK"
else
  rm -rf "$WORK"
fi
