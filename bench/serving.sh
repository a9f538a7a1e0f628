#!/usr/bin/env bash
# Serving benchmarks, each server with 2 workers on 127.0.0.1:
#
#   ./bench/serving.sh
#   BENCH_SCENARIOS=slowloris,streams ./bench/serving.sh     (a part)
#
#   slow       a model that waits 500 ms, chatmodels (sync and async model) against
#              `mlflow models serve`, wrk at 16, 64, 256 and 1,024 connections
#   slowloris  a normal client's latency (bench/clients.py normal) alone, then beside 1,000
#              connections sending their headers one byte a second (clients.py slow-headers)
#   streams    500 concurrent streams of 20 time-stamped chunks 50 ms apart, a sync and an async
#              model: each chunk's delay, the workers' peak memory (clients.py streams)
#
# A fresh chatmodels server per scenario (and stream model); each model is checked once before
# it is measured. Writes bench/results/<time>-serving/ (bench/results/latest-serving): summary.md,
# summary.json and the raw output.
#
# Environment: BENCH_SCENARIOS (slow,slowloris,streams), BENCH_SLOW_CONNECTIONS ("16 64 256
# 1024"), BENCH_SLOW_DURATION (s, 20), BENCH_WARMUP (s, 3), BENCH_SLOW_SERVERS
# (mlflow,chatmodels,chatmodels-async), BENCH_THREADS (wrk's, 2), BENCH_SLOWLORIS_CONNECTIONS
# (1000), BENCH_SLOWLORIS_PHASE (s, 10), BENCH_STREAMS (500), BENCH_STREAM_DURATION (s, 15),
# BENCH_STREAM_MODELS (sync,async), BENCH_BASELINE (a commit whose server is measured beside in
# the streams scenario; unset: none), BENCH_TIMEOUT (s, 1200).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/common.sh
source bench/common.sh
bound "${BENCH_TIMEOUT:-1200}"

SCENARIOS=,${BENCH_SCENARIOS:-slow,slowloris,streams},
SLOW_SERVERS=,${BENCH_SLOW_SERVERS:-mlflow,chatmodels,chatmodels-async},
STREAM_MODELS=${BENCH_STREAM_MODELS:-sync,async}
SLOWLORIS=${BENCH_SLOWLORIS_CONNECTIONS:-1000}
SLOWLORIS_PHASE=${BENCH_SLOWLORIS_PHASE:-10}
export BENCH_WARMUP=${BENCH_WARMUP:-3}
SLEEP=0.5  # s, bench/models.py's SleepModel

setup_venv
setup_wrk
[[ $SCENARIOS == *,slow,* && $SLOW_SERVERS == *,mlflow,* ]] && setup_mlflow
# Open files: up to 1,024 wrk connections, 1,000 slow ones, 500 streams, on both ends; the
# servers inherit the limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 65536 2>/dev/null || true
workspace serving
install
register() { "$PY" manage.py register_model "$1" "$2" >>"$results/register.txt"; }
clients() { "$PY" bench/clients.py "$@"; }

# --- slow: a 500 ms model, at growing connection counts ------------------------------------
if [[ $SCENARIOS == *,slow,* ]]; then
  declare -A url pids auth
  sides=()
  if [[ $SLOW_SERVERS == *,mlflow,* ]]; then
    start_mlflow mlflow-sleep "$SLEEP"
    sides+=(mlflow) url[mlflow]="http://127.0.0.1:$port/invocations" auth[mlflow]="" pids[mlflow]=$pid
  fi
  if [[ $SLOW_SERVERS == *,chatmodels* ]]; then
    register sleep bench/models.py:SleepModel
    register sleep-async bench/models.py:AsyncSleepModel
    start_chatmodels slow
    for side in chatmodels chatmodels-async; do
      [[ $SLOW_SERVERS == *,$side,* ]] || continue
      model="sleep"
      [ "$side" = chatmodels-async ] && model=sleep-async
      sides+=("$side") url[$side]="http://127.0.0.1:$port/api/models/$model/invocations"
      auth[$side]=$key pids[$side]=$pid
    done
  fi
  for side in "${sides[@]}"; do tool verify "${url[$side]}" "${auth[$side]}"; done
  for c in ${BENCH_SLOW_CONNECTIONS:-16 64 256 1024}; do
    for side in "${sides[@]}"; do
      log "slow model, $side, $c connections"
      wrk_run slow "connections=$c,server=$side,ideal=$(awk "BEGIN { print $c / $SLEEP }")" \
        "${pids[$side]}" "${url[$side]}" "${auth[$side]}" -t "$((c < 2 ? c : ${BENCH_THREADS:-2}))" \
        -c "$c" -d "${BENCH_SLOW_DURATION:-20}s" --timeout 10s
      # A server that queues (MLflow) is still answering what wrk left in flight: wait for it.
      tool settle "${url[$side]}" "${auth[$side]}" 0.75 30
    done
  done
  for side in "${sides[@]}"; do stop_server "${pids[$side]}"; done
fi

# --- slowloris: a normal client alone, then beside slow-header connections ----------------------
if [[ $SCENARIOS == *,slowloris,* ]]; then
  register echo examples/echo.py:EchoModel
  start_chatmodels slowloris
  server=$pid echo_url="http://127.0.0.1:$port/api/models/echo/invocations"
  tool verify "$echo_url" "$key"
  log "a normal client alone for ${SLOWLORIS_PHASE}s"
  clients normal "$echo_url" "$key" --duration "$SLOWLORIS_PHASE" --results "$results" \
    --label phase=alone
  log "$SLOWLORIS slow-header connections, then the normal client beside them"
  start slow-headers "$PY" bench/clients.py slow-headers "$port" --count "$SLOWLORIS"
  slow=$pid
  for _ in $(seq 1 60); do  # up to 30 s for all of them to be open
    [ "$(tool established "$port")" -ge "$SLOWLORIS" ] && break
    sleep 0.5
  done
  clients normal "$echo_url" "$key" --duration "$SLOWLORIS_PHASE" --results "$results" \
    --label phase=beside --label "slow open=$(tool established "$port")"
  stop_server "$slow"
  stop_server "$server"
fi

# --- streams: many concurrent streams of time-stamped chunks ------------------------------------
if [[ $SCENARIOS == *,streams,* ]]; then
  register stream bench/models.py:StreamModel
  register stream-async bench/models.py:AsyncStreamModel
  for variant in ${STREAM_MODELS//,/ }; do
    model=stream
    [ "$variant" = async ] && model=stream-async
    for server in chatmodels ${BENCH_BASELINE:+baseline}; do
      # A fresh server: its memory is this scenario's alone.
      if [ "$server" = baseline ]; then
        start_baseline "streams-$variant-baseline" "$BENCH_BASELINE"
      else
        start_chatmodels "streams-$variant"
      fi
      stream_url="http://127.0.0.1:$port/api/models/$model/invocations"
      clients streams "$stream_url" "$key" --check
      log "${BENCH_STREAMS:-500} concurrent streams of $model ($server)"
      clients streams "$stream_url" "$key" --concurrency "${BENCH_STREAMS:-500}" \
        --duration "${BENCH_STREAM_DURATION:-15}" --server-pid "$pid" --results "$results" \
        --label "model=$model" --label "server=$server"
      stop_server "$pid"
    done
  done
fi

log "results (raw output in $results/)"
tool report "$results"
