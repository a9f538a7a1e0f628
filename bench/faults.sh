#!/usr/bin/env bash
# A healthy model's latency beside models that fail (bench/fault_models.py), a fresh chatmodels
# server ($WORKERS workers) on 127.0.0.1 per fault:
#
#   ./bench/faults.sh
#   QUICK=1 ./bench/faults.sh                 (small counts, 3 s phases)
#   BENCH_FAULTS=hang,flood ./bench/faults.sh (a part)
#
#   exit    ExitModel kills its own process (os._exit(1)) on each of 100 calls (4 at a time)
#   hang    HangModel never returns: 1,100 calls at once, whose clients give up after 3 s
#   block   BlockingAsyncModel blocks its event loop (time.sleep(5) in async def predict): calls
#           4 at a time for the whole phase
#   flood   FloodStreamModel streams 100 MB to a client that reads the response's headers, then
#           nothing (clients.py stalled-stream), held for the phase (the server's memory
#           sampled every 0.5 s)
#
# For each fault: both models answer once; the normal client (clients.py normal:
# BENCH_NORMAL_CONCURRENCY callers, BENCH_NORMAL_RATE requests a second in all, a new
# connection each) calls HealthyAsyncModel alone for BENCH_PHASE s (the quiet run); the server's
# threads, memory and processes (its whole process tree) are taken; the fault load starts and the
# normal client runs again beside it, the server sampled meanwhile; once the fault load has ended
# and BENCH_AFTER s more have passed, the server is looked at again: its threads, memory and
# processes, the chat requests it has in flight (GET /metrics), whether its main process is
# alive, whether a worker process was replaced, GET /health. Goal: the healthy model's p99
# within 1.5x of the quiet run, no slot, thread or memory leak, the server never exits. Writes
# bench/results/<time>-faults/ (bench/results/latest-faults): summary.md, summary.json, each
# fault's raw output in fault-NAME/.
#
# Environment (QUICK=1 values in brackets): BENCH_FAULTS (exit,hang,block,flood), BENCH_PHASE
# (s, 10 [3]), BENCH_AFTER (s, 5 [2]), BENCH_LATE (s after a phase for one more look, 0: none;
# 35 outlasts granian's idle threads), BENCH_EXIT_CALLS (100 [10]), BENCH_EXIT_CONCURRENCY (4),
# BENCH_HANG_CALLS (1100 [20]), BENCH_HANG_GIVE_UP (s, 3), BENCH_BLOCK_SECONDS (5 [2]),
# BENCH_BLOCK_CONCURRENCY (4), BENCH_FLOOD_MB (100 [20]), BENCH_FLOOD_CLIENTS (1),
# BENCH_FLOOD_HOLD (s, 10 [4]), BENCH_NORMAL_CONCURRENCY (4), BENCH_NORMAL_RATE (requests/s,
# 50), WORKERS (2), BENCH_SERVER_ENV (VAR=VALUE ... for the server, e.g.
# "CHATMODELS_MODEL_TIMEOUT=30"), BENCH_TIMEOUT (s, 900 [300]).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/common.sh
source bench/common.sh
bound "${BENCH_TIMEOUT:-$(sized 300 900)}"

FAULTS=,${BENCH_FAULTS:-exit,hang,block,flood},
PHASE=${BENCH_PHASE:-$(sized 3 10)}
AFTER=${BENCH_AFTER:-$(sized 2 5)}
LATE=${BENCH_LATE:-0}
EXIT_CALLS=${BENCH_EXIT_CALLS:-$(sized 10 100)}
HANG_CALLS=${BENCH_HANG_CALLS:-$(sized 20 1100)}
HANG_GIVE_UP=${BENCH_HANG_GIVE_UP:-3}
FLOOD_CLIENTS=${BENCH_FLOOD_CLIENTS:-1}
FLOOD_HOLD=${BENCH_FLOOD_HOLD:-$(sized 4 10)}
MODELS=bench/fault_models.py

setup_venv
# Open files: 1,100 hung calls, on both ends; the server inherits the limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 65536 2>/dev/null || true
workspace faults
install
register() { "$PY" manage.py register_model "$@" >>"$results/register.txt"; }
register healthy "$MODELS:HealthyAsyncModel"
register exit "$MODELS:ExitModel"
register hang "$MODELS:HangModel"
echo "{\"block_seconds\": ${BENCH_BLOCK_SECONDS:-$(sized 2 5)}}" >"$tmp/block.json"
register block "$MODELS:BlockingAsyncModel" --model-config "$tmp/block.json"
echo "{\"megabytes\": ${BENCH_FLOOD_MB:-$(sized 20 100)}}" >"$tmp/flood.json"
register flood "$MODELS:FloodStreamModel" --model-config "$tmp/flood.json"

# normal DIR SECONDS [SAMPLE]: the normal client on the healthy model for SECONDS, into
# DIR/normal.jsonl; with SAMPLE, the server sampled meanwhile (DIR/during.json).
normal() {
  "$PY" bench/clients.py normal "$base/api/models/healthy/invocations" "$key" --duration "$2" \
    --no-health --concurrency "${BENCH_NORMAL_CONCURRENCY:-4}" \
    --rate "${BENCH_NORMAL_RATE:-50}" >"$1/normal.jsonl" &
  local client=$!
  if [ -n "${3:-}" ]; then tool watch "$server" "$2" >"$1/during.json"; fi
  wait "$client"
  cat "$1/normal.jsonl"
}

# fault NAME: a fresh server; the quiet run, then the run beside NAME's fault load; its record.
fault() {
  local name=$1 dir=$results/fault-$1 url load stalled seconds=$PHASE
  mkdir -p "$dir/quiet"
  log "$name: a fresh server, the quiet run"
  # shellcheck disable=SC2086  # BENCH_SERVER_ENV is a list of VAR=VALUE words
  start_chatmodels "$name" ${BENCH_SERVER_ENV:-}
  server=$pid base="http://127.0.0.1:$port" url="http://127.0.0.1:$port/api/models/$name/invocations"
  tool verify "$base/api/models/healthy/invocations" "$key"
  tool verify "$url" "$key"
  # Warm-up: each server process starts both models' workers (a fault call does not wait for one).
  "$PY" bench/clients.py normal "$url" "$key" --duration 2 --no-health --concurrency 4 >/dev/null
  normal "$dir/quiet" 2 >/dev/null
  normal "$dir/quiet" "$PHASE"
  tool state "$server" "$base" >"$dir/before.json"
  log "$name: the fault load, and the normal client beside it"
  case $name in
    exit)
      "$PY" bench/clients.py calls "$url" "$key" --count "$EXIT_CALLS" \
        --concurrency "${BENCH_EXIT_CONCURRENCY:-4}" --timeout 60 >"$dir/calls.json" & ;;
    hang)
      "$PY" bench/clients.py calls "$url" "$key" --count "$HANG_CALLS" \
        --concurrency "$HANG_CALLS" --timeout "$HANG_GIVE_UP" >"$dir/calls.json" & ;;
    block)
      "$PY" bench/clients.py calls "$url" "$key" --count 0 --duration "$PHASE" \
        --concurrency "${BENCH_BLOCK_CONCURRENCY:-4}" --timeout 60 >"$dir/calls.json" & ;;
    flood)
      start stalled-stream "$PY" bench/clients.py stalled-stream "$port" --path "${url#"$base"}" \
        --key "$key" --count "$FLOOD_CLIENTS" --status "$dir/held.json"
      stalled=$pid seconds=$FLOOD_HOLD
      tool wait-held "$dir/held.json" "$FLOOD_CLIENTS" 30
      cp "$dir/held.json" "$dir/held-start.json" ;;
  esac
  load=$!
  normal "$dir" "$seconds" sample
  if [ "$name" = flood ]; then
    tool established "$port" >"$dir/established.txt"
    stop_server "$stalled"  # which writes its status as it was before closing it
    cp "$dir/held.json" "$dir/held-end.json"
  else
    wait "$load"
    cat "$dir/calls.json"
  fi
  sleep "$AFTER"
  tool state "$server" "$base" >"$dir/after.json"
  if [ "$LATE" != 0 ]; then  # granian keeps idle threads 30 s: what is left then is held
    sleep "$(awk "BEGIN { print $LATE - $AFTER }")"
    tool state "$server" "$base" >"$dir/late.json"
  fi
  tool combine "$results" faults "$dir" "fault=$name" --quiet "$dir/quiet" --show-quiet
  stop_server "$server"
}

for name in exit hang block flood; do
  [[ $FAULTS == *,$name,* ]] || continue
  fault "$name"
done

log "results (raw output in $results/)"
tool report "$results"
