# shellcheck shell=bash
# Shared by the bench scripts (sourced after they cd to the repo and set PY): messages, the
# benchmark tool, and a workspace whose servers are stopped and whose temp folder is removed
# when the script ends, fails or is interrupted.

log() { printf '\n== %s\n' "$*"; }
die() { echo "bench: FAILED: $*" >&2; exit 1; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
tool() { "$PY" bench/benchtool.py "$@"; }

# Quarter seconds a server has after SIGTERM before it is killed (usage_cost.sh allows more:
# its workers write their usage counts on the way out).
STOP_TRIES=${STOP_TRIES:-40}

stop_server() {  # stop a server's whole process group (each is started in its own session)
  local pid=$1
  kill -TERM -- "-$pid" 2>/dev/null || return 0
  for _ in $(seq 1 "$STOP_TRIES"); do
    kill -0 -- "-$pid" 2>/dev/null || return 0
    sleep 0.25
  done
  kill -KILL -- "-$pid" 2>/dev/null || true
}

# Sets tmp (a temp folder) and servers (the process groups to stop: append each one started).
bench_workspace() {
  tmp=$(mktemp -d)
  servers=()
  trap bench_cleanup EXIT
  trap 'echo "bench: interrupted" >&2; exit 130' INT TERM
}

bench_cleanup() {
  local pid
  for pid in "${servers[@]}"; do stop_server "$pid"; done
  rm -rf "$tmp"
}
