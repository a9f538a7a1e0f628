#!/usr/bin/env bash
# A normal client beside abusive connections, on one chatmodels server ($WORKERS workers) on
# 127.0.0.1, the echo model registered:
#
#   ./bench/abuse.sh
#   QUICK=1 ./bench/abuse.sh                      (50 connections of each kind, 3 s phases)
#   BENCH_ABUSE=slow-body,idle-h2c ./bench/abuse.sh   (a part)
#
#   quiet            the normal client alone (the baseline of the ratios)
#   slow-headers     1,000 connections sending their headers one byte a second (reopened when
#                    the server drops them)
#   slow-body        2,000 chat requests (POST /api/models/echo/invocations, a valid key) whose
#                    body comes one byte every 2 s
#   slow-body-admin  2,000 admin logins (POST /admin/login/ after GET /admin/login/ for the CSRF
#                    cookie and token, on the same connection), the form one byte every 2 s
#   idle-http1       2,000 HTTP/1.1 keep-alive connections: one GET /health, then silence
#   idle-h2c         2,000 HTTP/2 cleartext connections (prior knowledge): the preface and an
#                    empty SETTINGS frame, then silence
#
# Each phase: the server's threads, memory and processes (its whole process tree) before; the
# abusive connections opened (bench/clients.py, up to BENCH_OPEN_WAIT s for all of them to be
# set up); the normal client (clients.py normal: BENCH_NORMAL_CONCURRENCY callers, at
# BENCH_NORMAL_RATE chat requests a second in all, each on a new connection) for BENCH_PHASE s
# beside them, the server sampled every 0.5 s meanwhile; how many are still open at the end (the
# server may close them: that is good); then they are closed and the server is sampled again
# BENCH_AFTER s later. Goal: the normal client's p99 at most 50 ms, no growth in threads or
# memory. Writes bench/results/<time>-abuse/ (bench/results/latest-abuse): summary.md,
# summary.json, each phase's raw output in phase-NAME/.
#
# Environment (QUICK=1 values in brackets): BENCH_ABUSE
# (slow-headers,slow-body,slow-body-admin,idle-http1,idle-h2c), BENCH_SLOW_HEADERS (1000 [50]),
# BENCH_SLOW_BODIES (2000 [50]), BENCH_SLOW_LOGINS (2000 [50]), BENCH_IDLE_HTTP1 (2000 [50]),
# BENCH_IDLE_H2C (2000 [50]), BENCH_SLOW_INTERVAL (s between two bytes of a body, 2),
# BENCH_PHASE (s, 10 [3]), BENCH_AFTER (s, 5 [2]), BENCH_LATE (s after a phase for one more
# look, 0: none; 35 outlasts granian's idle threads), BENCH_OPEN_WAIT (s, 60 [10]),
# BENCH_NORMAL_CONCURRENCY (4), BENCH_NORMAL_RATE (requests/s, 50), WORKERS (2),
# BENCH_SERVER_ENV (VAR=VALUE ... for the server, e.g. "HEADER_TIMEOUT=5000"),
# BENCH_TIMEOUT (s, 600 [240]).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/common.sh
source bench/common.sh
bound "${BENCH_TIMEOUT:-$(sized 240 600)}"

ABUSE=,${BENCH_ABUSE:-slow-headers,slow-body,slow-body-admin,idle-http1,idle-h2c},
PHASE=${BENCH_PHASE:-$(sized 3 10)}
AFTER=${BENCH_AFTER:-$(sized 2 5)}
LATE=${BENCH_LATE:-0}
OPEN_WAIT=${BENCH_OPEN_WAIT:-$(sized 10 60)}
INTERVAL=${BENCH_SLOW_INTERVAL:-2}
declare -A COUNT=(
  [slow-headers]=${BENCH_SLOW_HEADERS:-$(sized 50 1000)}
  [slow-body]=${BENCH_SLOW_BODIES:-$(sized 50 2000)}
  [slow-body-admin]=${BENCH_SLOW_LOGINS:-$(sized 50 2000)}
  [idle-http1]=${BENCH_IDLE_HTTP1:-$(sized 50 2000)}
  [idle-h2c]=${BENCH_IDLE_H2C:-$(sized 50 2000)}
)

setup_venv
# Open files: up to 2,000 abusive connections and the normal client's, on both ends; the server
# inherits the limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 65536 2>/dev/null || true
workspace abuse
install
export STATIC_ROOT=$tmp/static  # the admin's login page needs the static files' manifest
if [[ $ABUSE == *,slow-body-admin,* ]]; then "$PY" manage.py collectstatic --noinput -v 0; fi
"$PY" manage.py register_model echo examples/echo.py:EchoModel >>"$results/register.txt"
# shellcheck disable=SC2086  # BENCH_SERVER_ENV is a list of VAR=VALUE words
start_chatmodels abuse ${BENCH_SERVER_ENV:-}
server=$pid base="http://127.0.0.1:$port"
echo_url="$base/api/models/echo/invocations"
tool verify "$echo_url" "$key"

# normal DIR: the normal client for PHASE s, the server sampled meanwhile.
normal() {
  "$PY" bench/clients.py normal "$echo_url" "$key" --duration "$PHASE" --no-health \
    --concurrency "${BENCH_NORMAL_CONCURRENCY:-4}" --rate "${BENCH_NORMAL_RATE:-50}" \
    >"$1/normal.jsonl" &
  local client=$!
  tool watch "$server" "$PHASE" >"$1/during.json"
  wait "$client"
  cat "$1/normal.jsonl"
}

# phase NAME [CLIENT ARGS...]: one phase, the abusive connections made by
# `bench/clients.py CLIENT PORT ARGS...` (none for the quiet phase); its record in runs.jsonl.
phase() {
  local name=$1 dir=$results/phase-$1 abuser=""
  shift
  mkdir -p "$dir"
  log "$name"
  tool state "$server" "$base" >"$dir/before.json"
  grep -q '"alive": true' "$dir/before.json" || die "the server (pid $server) is gone: $(cat "$dir/before.json")"
  if [ $# -gt 0 ]; then
    start "abuse-$name" "$PY" bench/clients.py "$1" "$port" --status "$dir/held.json" "${@:2}"
    abuser=$pid
    tool wait-held "$dir/held.json" "${COUNT[$name]}" "$OPEN_WAIT"
    cp "$dir/held.json" "$dir/held-start.json"
  fi
  normal "$dir"
  if [ -n "$abuser" ]; then
    tool established "$port" >"$dir/established.txt"
    stop_server "$abuser"  # which writes its status as it was before closing them
    cp "$dir/held.json" "$dir/held-end.json"
  fi
  sleep "$AFTER"
  tool state "$server" "$base" >"$dir/after.json"
  if [ "$LATE" != 0 ]; then  # granian keeps idle threads 30 s: what is left then is held
    sleep "$(awk "BEGIN { print $LATE - $AFTER }")"
    tool state "$server" "$base" >"$dir/late.json"
  fi
  tool combine "$results" abuse "$dir" "phase=$name" --quiet "$quiet"
}

log "warm-up: the normal client for 2 s (each server process starts the model's worker)"
"$PY" bench/clients.py normal "$echo_url" "$key" --duration 2 --no-health \
  --concurrency "${BENCH_NORMAL_CONCURRENCY:-4}" >/dev/null
quiet=$results/phase-quiet  # the baseline of the ratios (its own are 1)
phase quiet
for name in slow-headers slow-body slow-body-admin idle-http1 idle-h2c; do
  [[ $ABUSE == *,$name,* ]] || continue
  count=${COUNT[$name]}
  case $name in
    slow-headers) phase "$name" slow-headers --count "$count" ;;
    slow-body)
      phase "$name" slow-body --count "$count" --interval "$INTERVAL" --key "$key" \
        --path /api/models/echo/invocations ;;
    slow-body-admin)
      phase "$name" slow-body --count "$count" --interval "$INTERVAL" --csrf --path /admin/login/ ;;
    idle-http1) phase "$name" idle-http1 --count "$count" ;;
    idle-h2c) phase "$name" idle-h2c --count "$count" ;;
  esac
done

log "results (raw output in $results/)"
tool report "$results"
