#!/usr/bin/env bash
# What usage accounting (and the other per-request features) costs, in three parts:
#
#   ./bench/usage_cost.sh                      (all four, about 10 minutes)
#   BENCH_PARTS=cost ./bench/usage_cost.sh     (or inprocess, instructions, or writes)
#
#   cost    the echo model through POST /api/models/echo/invocations with a key, on two servers
#           of one throwaway install (SQLite), 2 workers each, side by side: every feature ON
#           against all OFF. wrk loads them in turn, many short rounds, the order alternating
#           (off,on / on,off / ...) so a drift of the machine's speed weighs on both alike, both
#           servers started anew for each round (BENCH_FRESH=0: once) so that the luck of where
#           a server's processes land (memory layout, hash seeds, cores) is drawn anew each round
#           and evens out in the median; around each measured run it reads the server's CPU time
#           (user + system of every process in its process group). Prints each one's median req/s and server CPU per request, the
#           ratios ON / OFF of both, and the median of each round's paired ratio (the issue's
#           bar: a throughput cost of at most 5%).
#   inprocess  the same comparison inside one process (bench/feature_cost.py): batches of
#           invocations through Django's WSGI handler, ON and OFF interleaved 60 times, timed in
#           CPU time; all features, then each alone (BENCH_INPROCESS_FEATURES, ";"-separated).
#   instructions  the instructions a request executes, ON and OFF, counted by valgrind
#           (cachegrind; installed with apt-get when missing): inside Django (feature_cost.py,
#           runs of 100 and 1,100 invocations of each side: the difference over the 1,000), then
#           through the real server (./scripts/server with 1 worker, granian's processes under
#           valgrind: 200 and 1,200 requests one after another). Unlike time, a count that the
#           speed of the machine, what else it runs and where the server's processes land do not
#           move; it leaves out what the kernel does (alike on both sides).
#   writes  the same, features ON, against PostgreSQL (scripts/with-postgres starts a throwaway
#           one), at a fixed BENCH_RATE req/s (bench/rate.lua) for BENCH_WRITES_DURATION s; prints
#           the requests served, the usage writes they caused per second (upserts of
#           chatmodels_usagebucket rows, from pg_stat_user_tables), and checks that the usage
#           table counted every request wrk saw answered (and no more than those and the ones in
#           flight when wrk stopped).
#
# The features are switched by environment variables, given as "NAME=VALUE ..." lists:
# BENCH_ON_ENV (default: CHATMODELS_USAGE=true CHATMODELS_METRICS=true) and BENCH_OFF_ENV
# (default: CHATMODELS_USAGE=false CHATMODELS_METRICS=false). Per-key limits are on a key: the ON
# server is called with a key that has requests-per-minute, tokens-per-minute and monthly-budget
# limits (too high to refuse anything, so each request is checked and counted), the OFF server
# with a key that has none (BENCH_LIMITS=0: both with the key that has none). The limits count in
# the database unless BENCH_ON_ENV names a Redis CACHE_URL.
#
# Environment: BENCH_PARTS (cost,inprocess,instructions,writes), BENCH_DURATION (s per wrk run, 8),
# BENCH_WARMUP (s, 2), BENCH_INPROCESS_FEATURES, BENCH_INPROCESS_ROUNDS (60), BENCH_ROUNDS (12),
# BENCH_FRESH (1), BENCH_CONNECTIONS (16), BENCH_THREADS (wrk's, 2), BENCH_RATE (1000),
# BENCH_WRITES_DURATION (s, 60), BENCH_WRITES_CONNECTIONS (64), BENCH_TIMEOUT (s for the whole
# run, 900). Servers listen on 127.0.0.1 only and are stopped on success, failure or Ctrl-C.
# Raw output: bench/results/<UTC time>-usage/ (bench/results/latest-usage links to it).
set -euo pipefail

if [ -z "${BENCH_UNDER_TIMEOUT:-}" ]; then  # bound the whole run, set-up included
  export BENCH_UNDER_TIMEOUT=1
  exec timeout -k 15 "${BENCH_TIMEOUT:-900}" "$0" "$@"
fi
cd "$(dirname "$0")/.."

PARTS=${BENCH_PARTS:-cost,inprocess,instructions,writes}
DURATION=${BENCH_DURATION:-8}  # 12 rounds x 2 x (2 + 8 s + starting): about 6 minutes
WARMUP=${BENCH_WARMUP:-2}
ROUNDS=${BENCH_ROUNDS:-12}
FRESH=${BENCH_FRESH:-1}  # 1: both servers started anew for each round
CONNECTIONS=${BENCH_CONNECTIONS:-16}
WRK_THREADS=${BENCH_THREADS:-2}  # wrk's (THREADS, in the environment, is ./scripts/server's)
RATE=${BENCH_RATE:-1000}
WRITES_DURATION=${BENCH_WRITES_DURATION:-60}
WRITES_CONNECTIONS=${BENCH_WRITES_CONNECTIONS:-64}
ON_ENV=${BENCH_ON_ENV:-CHATMODELS_USAGE=true CHATMODELS_METRICS=true}
OFF_ENV=${BENCH_OFF_ENV:-CHATMODELS_USAGE=false CHATMODELS_METRICS=false}
INPROCESS_FEATURES=${BENCH_INPROCESS_FEATURES:-metrics,usage,limits;metrics;usage;limits}
INPROCESS_ROUNDS=${BENCH_INPROCESS_ROUNDS:-60}
LIMITS=${BENCH_LIMITS:-1}  # 0: the ON server is called with the key that has no limits
WORKERS=2
PY=.venv/bin/python
STOP_TRIES=120  # its workers write their usage counts when they stop
# shellcheck source=bench/common.sh
source bench/common.sh

has() { [[ ",$PARTS," == *",$1,"* ]]; }

# --- the "writes" part runs again inside scripts/with-postgres, with DATABASE_URL set ----------
if [ "${1:-}" = "--writes-inside-postgres" ]; then
  results=$2
else
  if [ ! -x "$PY" ]; then
    log "creating the project venv (.venv)"
    "${PYTHON:-python3}" -m venv .venv
  fi
  "$PY" -m pip install -q --disable-pip-version-check -r requirements.txt
  command -v wrk >/dev/null || die "wrk is missing: apt-get install wrk (or run ./bench/run.sh once)"
  stamp=$(date -u +%Y%m%dT%H%M%SZ)-usage
  results=bench/results/$stamp
  mkdir -p "$results"
  ln -sfn "$stamp" bench/results/latest-usage
fi

bench_workspace

# install DATABASE_URL: a throwaway install there, with the echo model and a key ($key).
install() {
  SECRET_KEY=$("$PY" -c 'import secrets; print(secrets.token_urlsafe(50))')
  export SECRET_KEY DEBUG=false SECURE_SSL_REDIRECT=false ALLOWED_HOSTS=127.0.0.1,localhost
  export DATABASE_URL=$1 CACHE_URL=locmemcache://
  export CHATMODELS_PACKAGE_DIR="$tmp/packages" CHATMODELS_CACHE_DIR="$tmp/cache"
  export AWS_STORAGE_BUCKET_NAME='' CHATMODELS_THROTTLE_RATE='' LOG_LEVEL=WARNING
  export DJANGO_SETTINGS_MODULE=project.settings ENV_FILE=
  "$PY" manage.py migrate --noinput -v 0
  "$PY" manage.py register_model echo examples/echo.py:EchoModel >"$results/register.txt"
  key=$("$PY" manage.py create_api_key bench-usage | tail -n 1)
  limited_key=$("$PY" manage.py create_api_key bench-usage-limited --rpm 1000000000 \
    --tpm 1000000000 --monthly-budget 1000000000000 | tail -n 1)
}

# start NAME "ENV=VALUE ...": ./scripts/server with those variables; sets $port and $pid.
start() {
  local name=$1 settings=$2
  port=$(tool port)
  # shellcheck disable=SC2086  # the list is split into NAME=VALUE words on purpose
  env $settings HOST=127.0.0.1 PORT="$port" WORKERS=$WORKERS PYTHON=$PY \
    setsid ./scripts/server >"$results/server-$name.log" 2>&1 &
  pid=$!
  servers+=("$pid")
  tool wait "http://127.0.0.1:$port/health" 60 "$pid"
  tool verify "http://127.0.0.1:$port/api/models/echo/invocations" "$key" \
    | tee "$results/verify-$name.txt"
}

# wrk_run NAME ROUND URL PGID: a warm-up, then the measured run (its BENCH_RESULT line is kept),
# with the CPU time of the server's process group read just before and just after it.
wrk_run() {
  local name=$1 round=$2 url=$3 pgid=$4 key=$key
  [ "$name" = off ] || [ "$LIMITS" = 0 ] || key=$limited_key
  log "$name, round $round: warm-up ${WARMUP}s, then wrk -t$WRK_THREADS -c$CONNECTIONS -d${DURATION}s"
  BENCH_AUTH=$key wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${WARMUP}s" --timeout 5s \
    -s bench/post.lua "$url" >/dev/null
  tool cpu-group "$pgid" >"$results/cpu-$name-$round.jsonl"
  BENCH_AUTH=$key wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --timeout 5s \
    --latency -s bench/post.lua "$url" >"$results/wrk-$name-$round.txt"
  tool cpu-group "$pgid" >>"$results/cpu-$name-$round.jsonl"
  cat "$results/wrk-$name-$round.txt"
}

# --- part 1: the cost, ON against OFF, side by side ----------------------------------------------
cost() {
  log "cost: a throwaway install (SQLite, in $tmp); ON: $ON_ENV; OFF: $OFF_ENV"
  install "sqlite:///$tmp/db.sqlite3"
  local -A urls pgids envs=([on]=$ON_ENV [off]=$OFF_ENV)
  local round order name
  : >"$results/order.txt"
  for round in $(seq 1 "$ROUNDS"); do
    # In turn, so other work on the machine weighs on both; who goes first alternates, so a
    # slow drift (or the first run's head start) does too.
    if ((round % 2)); then order="off on"; else order="on off"; fi
    echo "$round $order" >>"$results/order.txt"
    if [ "$FRESH" = 1 ] || [ "$round" = 1 ]; then
      for name in $order; do
        start "$name-$round" "${envs[$name]}"
        urls[$name]="http://127.0.0.1:$port/api/models/echo/invocations" pgids[$name]=$pid
      done
    fi
    for name in $order; do
      wrk_run "$name" "$round" "${urls[$name]}" "${pgids[$name]}"
    done
    if [ "$FRESH" = 1 ] || [ "$round" = "$ROUNDS" ]; then
      stop_server "${pgids[on]}"
      stop_server "${pgids[off]}"
    fi
  done
  tool cost-report "$results" "$ON_ENV" "$OFF_ENV"
}

# --- part 2: the same cost inside one process, ON and OFF batches interleaved -------------------
inprocess() {
  log "inprocess: bench/feature_cost.py, a throwaway install (SQLite, in $tmp)"
  install "sqlite:///$tmp/inprocess.sqlite3"
  mkdir -p "$tmp/metrics-inprocess"
  local features
  for features in ${INPROCESS_FEATURES//;/ }; do
    # shellcheck disable=SC2086  # the list is split into NAME=VALUE words on purpose
    env $ON_ENV PROMETHEUS_MULTIPROC_DIR="$tmp/metrics-inprocess" "$PY" bench/feature_cost.py \
      --key "$key" --limited-key "$limited_key" --features "$features" \
      --rounds "$INPROCESS_ROUNDS" --json "$results/inprocess-${features//,/-}.json" \
      | tee "$results/inprocess-${features//,/-}.txt"
  done
}

# --- part 3: instructions per invocation, counted by valgrind ----------------------------------
instructions() {
  if ! command -v valgrind >/dev/null; then
    log "installing valgrind"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
  fi
  log "instructions: valgrind counts a request's instructions, ON and OFF (about 3 minutes)"
  install "sqlite:///$tmp/instructions.sqlite3"
  mkdir -p "$tmp/metrics-instructions"
  local side calls
  local -a runs=()
  for side in off on; do
    for calls in 100 1100; do
      # shellcheck disable=SC2086  # the list is split into NAME=VALUE words on purpose
      env $ON_ENV PYTHONHASHSEED=0 PROMETHEUS_MULTIPROC_DIR="$tmp/metrics-instructions" \
        valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \
        --log-file="$results/valgrind-$side-$calls.txt" "$PY" bench/feature_cost.py \
        --key "$key" --limited-key "$limited_key" --side "$side" --calls "$calls" >/dev/null &
      runs+=($!)
    done
  done
  for run in "${runs[@]}"; do wait "$run" || die "a valgrind run failed (see $results/valgrind-*.txt)"; done
  # Through the server: the same counts for requests over HTTP, granian included. PYTHON runs
  # scripts/server's granian under valgrind (its worker too: --trace-children).
  printf '#!/bin/sh\nexec valgrind --tool=cachegrind --cache-sim=no --trace-children=yes %s %s "$@"\n' \
    '--cachegrind-out-file=/dev/null --log-file="$VALGRIND_LOG"' "$PWD/$PY" >"$tmp/valgrind-python"
  chmod +x "$tmp/valgrind-python"
  runs=()
  for side in off on; do
    for calls in 200 1200; do
      server_instructions "$side" "$calls" "$(tool port)" &
      runs+=($!)
    done
  done
  for run in "${runs[@]}"; do wait "$run" || die "a server under valgrind failed (see $results/server-valgrind-*.log)"; done
  "$PY" - "$results" <<'PY' | tee "$results/summary-instructions.txt"
import re, sys
from pathlib import Path
results = Path(sys.argv[1])
def refs(pattern):
    files = sorted(results.glob(pattern))
    if not files:
        sys.exit(f"bench: FAILED: no {pattern} in {results}")
    return sum(int(re.search(r"I\s+refs:\s+([\d,]+)", f.read_text())[1].replace(",", ""))
               for f in files)
def show(title, per, each):
    print(f"\n{title}")
    print(f"  OFF (none of metrics, usage, limits): {per['off']:>11,.0f} per {each}")
    print(f"  ON  (metrics, usage, limits):         {per['on']:>11,.0f} per {each}")
    print(f"  ON / OFF = {per['on'] / per['off']:.4f}: {per['on'] - per['off']:+,.0f} instructions,"
          f" {100 * (per['on'] / per['off'] - 1):+.2f}%")
sides = ("off", "on")
show("instructions inside Django (valgrind, runs of 1,100 invocations less runs of 100)",
     {s: (refs(f"valgrind-{s}-1100.txt") - refs(f"valgrind-{s}-100.txt")) / 1000 for s in sides},
     "invocation")
show("instructions through the server, granian's processes (runs of 1,200 requests less 200)",
     {s: (refs(f"valgrind-server-{s}-1200.*.txt") - refs(f"valgrind-server-{s}-200.*.txt")) / 1000
      for s in sides}, "request")
PY
}

# server_instructions SIDE CALLS PORT: ./scripts/server (1 worker) under valgrind with SIDE's
# features and key, 20 requests to load the model, then CALLS; stopped (valgrind writes its
# counts, one file per process, when they exit). No writer threads, as in feature_cost.py --side.
server_instructions() {
  local side=$1 calls=$2 port=$3 settings=$OFF_ENV auth=$key pid
  if [ "$side" = on ]; then settings=$ON_ENV auth=$limited_key; fi
  # shellcheck disable=SC2086  # the list is split into NAME=VALUE words on purpose
  env $settings PYTHONHASHSEED=0 CHATMODELS_USAGE_FLUSH_SECONDS=0 \
    CHATMODELS_LIMITS_SETTLE_SECONDS=0 VALGRIND_LOG="$results/valgrind-server-$side-$calls.%p.txt" \
    HOST=127.0.0.1 PORT="$port" WORKERS=1 PYTHON="$tmp/valgrind-python" \
    setsid ./scripts/server >"$results/server-valgrind-$side-$calls.log" 2>&1 &
  pid=$!
  tool wait "http://127.0.0.1:$port/health" 600 "$pid"
  tool send "http://127.0.0.1:$port/api/models/echo/invocations" "$auth" 20 >/dev/null
  tool send "http://127.0.0.1:$port/api/models/echo/invocations" "$auth" "$calls"
  stop_server "$pid"
}

# --- part 4: usage writes at a fixed rate, on PostgreSQL -----------------------------------------
pg_writes() {  # rows of chatmodels_usagebucket inserted + updated so far (after stats are flushed)
  "$PY" - <<'PY'
import os, psycopg
with psycopg.connect(os.environ["DATABASE_URL"].replace("postgres://", "postgresql://", 1)) as db:
    db.execute("SELECT pg_stat_clear_snapshot()")
    row = db.execute(
        "SELECT n_tup_ins + n_tup_upd, (SELECT COALESCE(SUM(requests), 0) FROM chatmodels_usagebucket)"
        " FROM pg_stat_user_tables WHERE relname = 'chatmodels_usagebucket'"
    ).fetchone()
    print(row[0], row[1])
PY
}

writes() {
  log "writes: PostgreSQL at $DATABASE_URL; ON: $ON_ENV; ~$RATE req/s for ${WRITES_DURATION}s"
  install "$DATABASE_URL"
  start writes "$ON_ENV"
  local url="http://127.0.0.1:$port/api/models/echo/invocations" server_pid=$pid
  sleep 6  # the verify request's usage is written (every 5 s by default) before counting starts
  read -r writes_before counted_before < <(pg_writes)
  BENCH_AUTH=$key BENCH_RATE=$RATE BENCH_THREADS=$WRK_THREADS wrk -t"$WRK_THREADS" \
    -c"$WRITES_CONNECTIONS" -d"${WRITES_DURATION}s" --timeout 5s --latency -s bench/rate.lua \
    "$url" | tee "$results/wrk-writes.txt"
  stop_server "$server_pid"  # SIGTERM: the workers write what they still hold, then exit
  sleep 2  # PostgreSQL reports a backend's statistics within a second or so
  read -r writes_after counted_after < <(pg_writes)
  "$PY" - "$results" "$WRITES_DURATION" "$writes_before" "$writes_after" "$counted_before" \
    "$counted_after" "$RATE" "$WRITES_CONNECTIONS" <<'PY' | tee "$results/summary-writes.txt"
import json, sys
from pathlib import Path
results, duration = Path(sys.argv[1]), float(sys.argv[2])
writes_before, writes_after, counted_before, counted_after, rate = map(int, sys.argv[3:8])
text = (results / "wrk-writes.txt").read_text()
result = json.loads(next(l for l in text.splitlines() if l.startswith("BENCH_RESULT "))[13:])
served = result["requests"]
writes = writes_after - writes_before
counted = counted_after - counted_before
print(f"\nusage writes on PostgreSQL (target {rate:,} req/s for {duration:.0f} s)")
print(f"  requests: {served:,} ({served / (result['duration_us'] / 1e6):,.0f} req/s,"
      f" p99 {result['p99_us'] / 1000:.1f} ms, {result['non_2xx_3xx']} non-2xx)")
print(f"  usage row writes (upserts, one bucket each here): {writes} in all,"
      f" {writes / duration:.2f} per second, {1000 * writes / max(served, 1):.3f} per 1,000 requests")
# wrk leaves out the requests still in flight when it stops (at most one per connection); the
# server answered and counted them.
in_flight = int(sys.argv[8])
ok = served <= counted <= served + in_flight
print(f"  requests counted in the usage table: {counted:,}; wrk saw {served:,} answered, and up to"
      f" {in_flight} more were in flight when it stopped" + ("" if ok else "  <-- MISMATCH"))
json.dump({"served": served, "writes": writes, "writes_per_second": writes / duration,
           "counted": counted}, open(results / "summary-writes.json", "w"), indent=2)
sys.exit(0 if ok else 1)
PY
}

if [ "${1:-}" = "--writes-inside-postgres" ]; then
  writes
  exit 0
fi
if has cost; then cost; fi
if has inprocess; then inprocess; fi
if has instructions; then instructions; fi
if has writes; then
  log "writes: starting a throwaway PostgreSQL (scripts/with-postgres)"
  scripts/with-postgres bash bench/usage_cost.sh --writes-inside-postgres "$results"
fi
log "results in $results/"
