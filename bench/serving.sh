#!/usr/bin/env bash
# Serving benchmarks (issue 8), side by side in one run, each server with 2 workers on 127.0.0.1:
#
#   ./bench/serving.sh
#   BENCH_SCENARIOS=slowloris,streams BENCH_STREAM_MODELS=sync ./bench/serving.sh   (a part)
#
#   slow       a model that waits 500 ms, chatmodels (./scripts/server) vs `mlflow models serve`,
#              wrk at 16, 64, 256 and 1,024 connections: req/s against the ideal, p50, p99, errors
#   slowloris  1,000 connections sending their headers one byte a second, and a normal client:
#              its latency alone, then with them open (bench/load.py slowloris)
#   streams    500 concurrent streams of 20 time-stamped chunks 50 ms apart, a sync and an async
#              model: each chunk's delay from its yield to the client, worker memory
#              (bench/load.py streams)
#
# Sets up what it needs (the project's .venv, wrk, MLflow in bench/.venv-mlflow, a throwaway
# chatmodels install in a temp dir with the models of bench/models.py), starts a fresh chatmodels
# server for each scenario (and model), checks that each model answers once, measures, and stops
# every server it started, on success, failure or Ctrl-C; gives up after BENCH_TIMEOUT s. Prints a
# table and keeps everything under bench/results/<UTC time>/ (bench/results/latest-serving links
# to it).
#
# Environment: BENCH_SCENARIOS (slow,slowloris,streams), BENCH_SLOW_CONNECTIONS ("16 64 256
# 1024"), BENCH_SLOW_DURATION (s, 20), BENCH_SLOW_WARMUP (s, 3), BENCH_SLOW_SERVERS
# (mlflow,chatmodels; add chatmodels-async for the AsyncSleepModel), BENCH_THREADS (wrk's, 2),
# BENCH_SLOWLORIS_CONNECTIONS (1000), BENCH_SLOWLORIS_PHASE (s, 10), BENCH_STREAMS (500),
# BENCH_STREAM_DURATION (s, 15), BENCH_STREAM_MODELS (sync,async), BENCH_SERVER_THREADS (THREADS
# for ./scripts/server; its default when unset), BENCH_WAIT_QUIET (s, 0), BENCH_MAX_LOAD (1.0),
# BENCH_TIMEOUT (s for the whole run, 1200).
set -euo pipefail

if [ -z "${BENCH_UNDER_TIMEOUT:-}" ]; then  # bound the whole run, set-up included
  export BENCH_UNDER_TIMEOUT=1
  exec timeout -k 15 "${BENCH_TIMEOUT:-1200}" "$0" "$@"
fi
cd "$(dirname "$0")/.."

MLFLOW_VERSION=3.17.2  # as bench/run.sh
SCENARIOS=${BENCH_SCENARIOS:-slow,slowloris,streams}
SLOW_CONNECTIONS=${BENCH_SLOW_CONNECTIONS:-16 64 256 1024}
SLOW_CONNECTIONS=${SLOW_CONNECTIONS//,/ }
SLOW_DURATION=${BENCH_SLOW_DURATION:-20}
SLOW_WARMUP=${BENCH_SLOW_WARMUP:-3}
SLOW_SERVERS=${BENCH_SLOW_SERVERS:-mlflow,chatmodels}
WRK_THREADS=${BENCH_THREADS:-2}  # wrk's (THREADS, in the environment, is ./scripts/server's)
SLOWLORIS=${BENCH_SLOWLORIS_CONNECTIONS:-1000}
SLOWLORIS_PHASE=${BENCH_SLOWLORIS_PHASE:-10}
STREAMS=${BENCH_STREAMS:-500}
STREAM_DURATION=${BENCH_STREAM_DURATION:-15}
STREAM_MODELS=${BENCH_STREAM_MODELS:-sync,async}
WORKERS=2
SLEEP_FAST=0.75  # s: a sleep-model answer this quick means nothing is queued on the server
ROOT=$(pwd)
PY=.venv/bin/python
# shellcheck source=bench/common.sh
source bench/common.sh
MLFLOW_VENV=bench/.venv-mlflow

has() { [[ ",$SCENARIOS," == *",$1,"* ]]; }
listed() { [[ ",$1," == *",$2,"* ]]; }  # LIST ITEM

for scenario in ${SCENARIOS//,/ }; do
  case $scenario in slow | slowloris | streams) ;; *) die "unknown scenario '$scenario'" ;; esac
done
for side in ${SLOW_SERVERS//,/ }; do
  case $side in mlflow | chatmodels | chatmodels-async) ;; *) die "unknown slow server '$side'" ;; esac
done
for variant in ${STREAM_MODELS//,/ }; do
  case $variant in sync | async) ;; *) die "unknown stream model '$variant'" ;; esac
done
with_mlflow=
if has slow && listed "$SLOW_SERVERS" mlflow; then with_mlflow=1; fi

# --- set-up ----------------------------------------------------------------------------------
if [ ! -x "$PY" ]; then
  log "creating the project venv (.venv)"
  "${PYTHON:-python3}" -m venv .venv
fi
"$PY" -m pip install -q --disable-pip-version-check -r requirements.txt

if has slow && ! command -v wrk >/dev/null; then
  log "installing wrk"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi

if [ -n "$with_mlflow" ]; then
  if ! "$MLFLOW_VENV/bin/python" -c "import mlflow, sys; sys.exit(mlflow.__version__ != '$MLFLOW_VERSION')" 2>/dev/null; then
    log "installing mlflow==$MLFLOW_VERSION into $MLFLOW_VENV (once; a few minutes)"
    "${PYTHON:-python3}" -m venv "$MLFLOW_VENV"
    "$MLFLOW_VENV/bin/pip" install -q --disable-pip-version-check "mlflow==$MLFLOW_VERSION"
  fi
fi

# Open files: up to 1,024 wrk connections, 1,000 slow ones, 500 streams, on both ends. The
# servers started below inherit the limit.
hard=$(ulimit -Hn)
[ "$hard" = unlimited ] && hard=1048576
want=$((hard < 65536 ? hard : 65536))
[ "$(ulimit -n)" -lt "$want" ] && ulimit -n "$want"
if [ "$(ulimit -n)" -lt 8192 ]; then
  echo "bench: WARNING: only $(ulimit -n) open files allowed (hard limit $hard);" \
    "the larger connection counts may fail for want of file descriptors" >&2
fi

bench_workspace
stamp=$(date -u +%Y%m%dT%H%M%SZ)
results=bench/results/$stamp
mkdir -p "$results"
ln -sfn "$stamp" bench/results/latest-serving

load() { "$PY" bench/load.py "$@"; }

granian_version=$("$PY" -c 'import granian; print(granian.__version__)')
tool meta "$results/meta.json" "scenarios=$SCENARIOS" "workers=$WORKERS" "granian=$granian_version" \
  "mlflow=$([ -n "$with_mlflow" ] && echo "$MLFLOW_VERSION" || echo "-")" \
  "wrk_threads=$WRK_THREADS" "slow_connections=$SLOW_CONNECTIONS" \
  "slow_duration=$SLOW_DURATION" "slow_warmup=$SLOW_WARMUP" "slow_servers=$SLOW_SERVERS" \
  "slowloris_connections=$SLOWLORIS" "slowloris_phase=$SLOWLORIS_PHASE" "streams=$STREAMS" \
  "stream_duration=$STREAM_DURATION" "stream_models=$STREAM_MODELS" \
  "server_threads=${BENCH_SERVER_THREADS:-default}"

# --- chatmodels: a throwaway install, its models, an API key ---------------------------------
SECRET_KEY=$("$PY" -c 'import secrets; print(secrets.token_urlsafe(50))')
export SECRET_KEY DEBUG=false SECURE_SSL_REDIRECT=false ALLOWED_HOSTS=127.0.0.1,localhost
export DATABASE_URL="sqlite:///$tmp/db.sqlite3" CACHE_URL=locmemcache:// AWS_STORAGE_BUCKET_NAME=
export CHATMODELS_PACKAGE_DIR="$tmp/packages" CHATMODELS_CACHE_DIR="$tmp/cache"
export CHATMODELS_THROTTLE_RATE= LOG_LEVEL=WARNING DJANGO_SETTINGS_MODULE=project.settings
log "chatmodels: migrate, register the benchmark's models, create an API key (in $tmp)"
"$PY" manage.py migrate --noinput -v 0
register() { "$PY" manage.py register_model "$@" | tee -a "$results/register.txt"; }
if has slow; then
  listed "$SLOW_SERVERS" chatmodels && register sleep bench/models.py:SleepModel
  listed "$SLOW_SERVERS" chatmodels-async && register sleep-async bench/models.py:AsyncSleepModel
fi
if has slowloris; then register echo examples/echo.py:EchoModel; fi
if has streams; then
  listed "$STREAM_MODELS" sync && register stream bench/models.py:StreamModel
  listed "$STREAM_MODELS" async && register stream-async bench/models.py:AsyncStreamModel
fi
key=$("$PY" manage.py create_api_key bench | tail -n 1)

# Start ./scripts/server (granian WSGI) on a free port and wait for it: sets cm_port and cm_pid.
start_chatmodels() {
  local name=$1
  local -a vars=(HOST=127.0.0.1 "PORT=$(tool port)" "WORKERS=$WORKERS" "PYTHON=$PY")
  [ -n "${BENCH_SERVER_THREADS:-}" ] && vars+=("THREADS=$BENCH_SERVER_THREADS")
  cm_port=${vars[1]#PORT=}
  log "chatmodels ($name): ./scripts/server, $WORKERS workers, 127.0.0.1:$cm_port"
  env "${vars[@]}" setsid ./scripts/server >"$results/server-chatmodels-$name.log" 2>&1 &
  cm_pid=$!
  servers+=("$cm_pid")
  tool wait "http://127.0.0.1:$cm_port/health" 60 "$cm_pid"
}

# --- a quiet machine: other work on the cores skews every number -----------------------------
busy() { awk -v limit="${BENCH_MAX_LOAD:-1.0}" '{ exit !($1 > limit) }' /proc/loadavg; }
waited=0
while busy && [ "$waited" -lt "${BENCH_WAIT_QUIET:-0}" ]; do sleep 5; waited=$((waited + 5)); done
if busy; then
  echo "bench: WARNING: the machine is busy (load average $(cut -d' ' -f1-3 /proc/loadavg))," \
    "so every number will be worse and noisier than on an idle machine." \
    "BENCH_WAIT_QUIET=SECONDS waits for the load to fall first." >&2
fi

# --- slow: a 500 ms model, chatmodels vs MLflow, at growing connection counts ----------------
declare -A slow_url slow_key slow_pid
run_slow() {  # SIDE CONNECTIONS: warm-up, settle, measure (CPU around it), settle
  local side=$1 c=$2 t=$WRK_THREADS cpu
  local url=${slow_url[$side]} key=${slow_key[$side]} pid=${slow_pid[$side]}
  [ "$c" -lt "$t" ] && t=$c
  log "slow model, $side, $c connections: warm-up ${SLOW_WARMUP}s, then wrk -t$t -c$c" \
    "-d${SLOW_DURATION}s --timeout 10s"
  BENCH_AUTH=$key BENCH_CLOSE=0 wrk -t"$t" -c"$c" -d"${SLOW_WARMUP}s" --timeout 10s \
    -s bench/post.lua "$url" >"$results/slow-warmup-$side-$c.txt"
  tool settle "$url" "$key" "$SLEEP_FAST" 30 | tee -a "$results/slow-settle.txt"
  cut -d' ' -f1 /proc/loadavg >"$results/slow-load-$side-$c.txt"
  cpu=$(tool cpu "$pid")
  BENCH_AUTH=$key BENCH_CLOSE=0 wrk -t"$t" -c"$c" -d"${SLOW_DURATION}s" --timeout 10s --latency \
    -s bench/post.lua "$url" | tee "$results/slow-wrk-$side-$c.txt"
  echo "$cpu $(tool cpu "$pid")" >"$results/slow-cpu-$side-$c.txt"
  tool settle "$url" "$key" "$SLEEP_FAST" 30 | tee -a "$results/slow-settle.txt"
}

if has slow; then
  sides=()
  if [ -n "$with_mlflow" ]; then
    log "MLflow: saving bench/mlflow_sleep.py with mlflow.pyfunc.save_model"
    export MLFLOW_TRACKING_URI="sqlite:///$tmp/mlflow.db"  # keep MLflow's files out of the repo
    "$MLFLOW_VENV/bin/python" -W ignore bench/mlflow_sleep.py "$tmp/mlflow-sleep" \
      >"$results/mlflow-save.log" 2>&1 || { cat "$results/mlflow-save.log"; exit 1; }
    mlflow_port=$(tool port)
    log "MLflow: mlflow models serve -w $WORKERS on 127.0.0.1:$mlflow_port"
    (cd "$tmp" && PATH="$ROOT/$MLFLOW_VENV/bin:$PATH" UVICORN_ACCESS_LOG=false exec setsid \
      mlflow models serve -m "$tmp/mlflow-sleep" --env-manager local -w "$WORKERS" \
      -p "$mlflow_port" -h 127.0.0.1) >"$results/server-mlflow.log" 2>&1 &
    mlflow_pid=$!
    servers+=("$mlflow_pid")
    tool wait "http://127.0.0.1:$mlflow_port/ping" 120 "$mlflow_pid"
    slow_url[mlflow]="http://127.0.0.1:$mlflow_port/invocations"
    slow_key[mlflow]=""
    slow_pid[mlflow]=$mlflow_pid
    tool verify "${slow_url[mlflow]}" | tee "$results/verify-mlflow-sleep.txt"
    sides+=(mlflow)
  fi
  for side in chatmodels chatmodels-async; do
    listed "$SLOW_SERVERS" "$side" || continue
    [ -n "${slow_cm_pid:-}" ] || { start_chatmodels slow; slow_cm_pid=$cm_pid; slow_cm_port=$cm_port; }
    model=sleep
    [ "$side" = chatmodels-async ] && model=sleep-async
    slow_url[$side]="http://127.0.0.1:$slow_cm_port/api/models/$model/invocations"
    slow_key[$side]=$key
    slow_pid[$side]=$slow_cm_pid
    tool verify "${slow_url[$side]}" "$key" | tee "$results/verify-$model.txt"
    sides+=("$side")
  done
  # At each connection count the servers run one right after the other, so that other work on
  # the machine weighs on them alike.
  for c in $SLOW_CONNECTIONS; do
    for side in "${sides[@]}"; do run_slow "$side" "$c"; done
  done
  for side in "${sides[@]}"; do  # the workers' memory after the load
    tool rss "${slow_pid[$side]}" >"$results/slow-rss-$side.json"
  done
  for side in "${sides[@]}"; do stop_server "${slow_pid[$side]}"; done
fi

# --- slowloris: slow clients next to a normal one ---------------------------------------------
if has slowloris; then
  start_chatmodels slowloris
  tool verify "http://127.0.0.1:$cm_port/api/models/echo/invocations" "$key" \
    | tee "$results/verify-echo.txt"
  log "slow clients: $SLOWLORIS connections at one byte a second, next to a normal client"
  load slowloris --port "$cm_port" --key "$key" --model echo --slow "$SLOWLORIS" \
    --phase "$SLOWLORIS_PHASE" --json "$results/slowloris.json" | tee "$results/slowloris.txt"
  stop_server "$cm_pid"
fi

# --- streams: many concurrent streams of time-stamped chunks, a sync and an async model -------
if has streams; then
  for variant in ${STREAM_MODELS//,/ }; do
    model=stream
    [ "$variant" = async ] && model=stream-async
    start_chatmodels "streams-$variant"  # a fresh server: its memory is this scenario's alone
    load verify-stream --port "$cm_port" --key "$key" --model "$model" \
      | tee "$results/verify-$model.txt"
    log "streams: $STREAMS concurrent streams of $model for ${STREAM_DURATION}s"
    load streams --port "$cm_port" --key "$key" --model "$model" --concurrency "$STREAMS" \
      --duration "$STREAM_DURATION" --server-pid "$cm_pid" --json "$results/streams-$variant.json" \
      | tee "$results/streams-$variant.txt"
    stop_server "$cm_pid"
  done
fi

log "results (raw output in $results/)"
tool serving-report "$results"
