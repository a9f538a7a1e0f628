#!/usr/bin/env bash
# Benchmark chatmodels against `mlflow models serve` on the same echo model, side by side.
#
#   ./bench/run.sh          (or: make bench)
#
# Sets up what it needs (the project's .venv, wrk, MLflow in bench/.venv-mlflow), serves both
# sides with 2 workers each on free 127.0.0.1 ports, checks that each echoes, then loads them in
# turn with wrk, in two modes (Connection: close, the headline, then keep-alive), for
# BENCH_ROUNDS rounds, reading each server's CPU time around each run and its workers' memory
# after; then measures chatmodels' in-process overhead and profile (bench/overhead.py). Prints a
# table and keeps everything under bench/results/<UTC time>/ (bench/results/latest links to it).
# Stops every server it started, on success, failure or Ctrl-C; gives up after BENCH_TIMEOUT s.
#
# Environment: BENCH_DURATION (s, default 15), BENCH_WARMUP (s, default 3),
# BENCH_CONNECTIONS (default 16), BENCH_THREADS (default 2), BENCH_ONLY=mlflow|chatmodels,
# BENCH_ROUNDS (default 3), BENCH_OVERHEAD_N (invocations per batch in overhead.py, default 2000),
# BENCH_WAIT_QUIET (s to wait for a 1-minute load average under BENCH_MAX_LOAD, default 0 and
# 1.0), BENCH_TIMEOUT (s for the whole run, default 590).
set -euo pipefail

if [ -z "${BENCH_UNDER_TIMEOUT:-}" ]; then  # bound the whole run, set-up included
  export BENCH_UNDER_TIMEOUT=1
  exec timeout -k 15 "${BENCH_TIMEOUT:-590}" "$0" "$@"
fi
cd "$(dirname "$0")/.."

MLFLOW_VERSION=3.17.2  # the newest MLflow 3 whose mlflow-skinny is published alongside it
DURATION=${BENCH_DURATION:-15}
WARMUP=${BENCH_WARMUP:-3}
WRK_THREADS=${BENCH_THREADS:-2}  # wrk's (THREADS, in the environment, is ./scripts/server's)
CONNECTIONS=${BENCH_CONNECTIONS:-16}
WORKERS=2
ONLY=${BENCH_ONLY:-}
ROUNDS=${BENCH_ROUNDS:-3}
ROOT=$(pwd)
PY=.venv/bin/python
# shellcheck source=bench/common.sh
source bench/common.sh
MLFLOW_VENV=bench/.venv-mlflow

# --- set-up ----------------------------------------------------------------------------------
if [ ! -x "$PY" ]; then
  log "creating the project venv (.venv)"
  "${PYTHON:-python3}" -m venv .venv
fi
"$PY" -m pip install -q --disable-pip-version-check -r requirements.txt

if ! command -v wrk >/dev/null; then
  log "installing wrk"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi

if [ -z "$ONLY" ] || [ "$ONLY" = mlflow ]; then
  if ! "$MLFLOW_VENV/bin/python" -c "import mlflow, sys; sys.exit(mlflow.__version__ != '$MLFLOW_VERSION')" 2>/dev/null; then
    log "installing mlflow==$MLFLOW_VERSION into $MLFLOW_VENV (once; a few minutes)"
    "${PYTHON:-python3}" -m venv "$MLFLOW_VENV"
    "$MLFLOW_VENV/bin/pip" install -q --disable-pip-version-check "mlflow==$MLFLOW_VERSION"
  fi
fi

bench_workspace
stamp=$(date -u +%Y%m%dT%H%M%SZ)
results=bench/results/$stamp
mkdir -p "$results"
ln -sfn "$stamp" bench/results/latest


# One measured run: a warm-up, then wrk, with the server's CPU time before and after.
# Args: NAME MODE ROUND URL KEY PID.
run_wrk() {
  local name=$1 mode=$2 round=$3 url=$4 key=$5 pid=$6 close=0 cpu
  [ "$mode" = close ] && close=1
  log "$name, $mode, round $round: warm-up ${WARMUP}s," \
    "then wrk -t$WRK_THREADS -c$CONNECTIONS -d${DURATION}s"
  BENCH_AUTH=$key BENCH_CLOSE=$close wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${WARMUP}s" \
    --timeout 5s -s bench/post.lua "$url" >"$results/warmup-$name-$mode-$round.txt"
  cut -d' ' -f1 /proc/loadavg >"$results/load-$name-$mode-$round.txt"  # other work on the machine
  cpu=$(tool cpu "$pid")
  BENCH_AUTH=$key BENCH_CLOSE=$close wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${DURATION}s" \
    --timeout 5s --latency -s bench/post.lua "$url" | tee "$results/wrk-$name-$mode-$round.txt"
  echo "$cpu $(tool cpu "$pid")" >"$results/cpu-$name-$mode-$round.txt"
}

"$PY" - "$results/meta.json" "$DURATION" "$WARMUP" "$WRK_THREADS" "$CONNECTIONS" "$MLFLOW_VERSION" \
  "$ROUNDS" <<'PY'
import json, os, platform, sys, time
out, duration, warmup, threads, connections, mlflow, rounds = sys.argv[1:]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
json.dump({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cores": os.cpu_count(),
           "cpu": cpu, "python": platform.python_version(), "duration": int(duration),
           "warmup": int(warmup), "threads": int(threads), "connections": int(connections),
           "mlflow": mlflow, "workers": 2, "rounds": int(rounds)}, open(out, "w"), indent=2)
PY

# --- MLflow: the same echo model as an mlflow.pyfunc.ChatModel, `mlflow models serve` --------
sides=()
if [ -z "$ONLY" ] || [ "$ONLY" = mlflow ]; then
  log "MLflow: saving bench/mlflow_echo.py with mlflow.pyfunc.save_model"
  export MLFLOW_TRACKING_URI="sqlite:///$tmp/mlflow.db"  # keep MLflow's files out of the repo
  "$MLFLOW_VENV/bin/python" -W ignore bench/mlflow_echo.py "$tmp/mlflow-model" \
    >"$results/mlflow-save.log" 2>&1 || { cat "$results/mlflow-save.log"; exit 1; }
  mlflow_port=$(tool port)
  log "MLflow: mlflow models serve -w $WORKERS on 127.0.0.1:$mlflow_port"
  # uvicorn's per-request access log is turned off, as chatmodels' request log is (LOG_LEVEL).
  (cd "$tmp" && PATH="$ROOT/$MLFLOW_VENV/bin:$PATH" UVICORN_ACCESS_LOG=false exec setsid \
    mlflow models serve -m "$tmp/mlflow-model" --env-manager local -w "$WORKERS" \
    -p "$mlflow_port" -h 127.0.0.1) >"$results/server-mlflow.log" 2>&1 &
  mlflow_pid=$!
  servers+=("$mlflow_pid")
  mlflow_url="http://127.0.0.1:$mlflow_port/invocations"
  sides+=(mlflow)
fi

# --- chatmodels: a throwaway install served by ./scripts/server (granian WSGI), as in production
if [ -z "$ONLY" ] || [ "$ONLY" = chatmodels ]; then
  SECRET_KEY=$("$PY" -c 'import secrets; print(secrets.token_urlsafe(50))')
  export SECRET_KEY DEBUG=false SECURE_SSL_REDIRECT=false ALLOWED_HOSTS=127.0.0.1,localhost
  export DATABASE_URL="sqlite:///$tmp/db.sqlite3" CACHE_URL=locmemcache:// AWS_STORAGE_BUCKET_NAME=
  export CHATMODELS_PACKAGE_DIR="$tmp/packages" CHATMODELS_CACHE_DIR="$tmp/cache"
  export CHATMODELS_THROTTLE_RATE= LOG_LEVEL=WARNING DJANGO_SETTINGS_MODULE=project.settings
  log "chatmodels: migrate, register the echo model, create an API key (in $tmp)"
  "$PY" manage.py migrate --noinput -v 0
  "$PY" manage.py register_model echo examples/echo.py:EchoModel | tee "$results/register.txt"
  chatmodels_key=$("$PY" manage.py create_api_key bench | tail -n 1)
  chatmodels_port=$(tool port)
  log "chatmodels: ./scripts/server (granian WSGI), $WORKERS workers, 127.0.0.1:$chatmodels_port"
  HOST=127.0.0.1 PORT=$chatmodels_port WORKERS=$WORKERS PYTHON=$PY setsid ./scripts/server \
    >"$results/server-chatmodels.log" 2>&1 &
  chatmodels_pid=$!
  servers+=("$chatmodels_pid")
  chatmodels_url="http://127.0.0.1:$chatmodels_port/api/models/echo/invocations"
  sides+=(chatmodels)
fi

# --- a quiet machine: other work on the 2 cores skews every number ---------------------------
busy() { awk -v limit="${BENCH_MAX_LOAD:-1.0}" '{ exit !($1 > limit) }' /proc/loadavg; }
waited=0
while busy && [ "$waited" -lt "${BENCH_WAIT_QUIET:-0}" ]; do sleep 5; waited=$((waited + 5)); done
if busy; then
  echo "bench: WARNING: the machine is busy (load average $(cut -d' ' -f1-3 /proc/loadavg))," \
    "so throughput will be lower and noisier than on an idle machine; the two servers are" \
    "measured in turn, round after round, so the ratio suffers less. BENCH_WAIT_QUIET=SECONDS" \
    "waits for the load to fall first." >&2
fi

# --- both up and answering right, then measure them in turn ----------------------------------
# Each mode runs on one server right after the other, round after round, so that other work on
# the machine weighs on both alike; the report takes each one's median round.
for side in "${sides[@]}"; do
  if [ "$side" = mlflow ]; then
    tool wait "http://127.0.0.1:$mlflow_port/ping" 120 "$mlflow_pid"
    tool verify "$mlflow_url" | tee "$results/verify-mlflow.txt"
  else
    tool wait "http://127.0.0.1:$chatmodels_port/health" 60 "$chatmodels_pid"
    tool verify "$chatmodels_url" "$chatmodels_key" | tee "$results/verify-chatmodels.txt"
  fi
done
for mode in close keepalive; do
  for round in $(seq 1 "$ROUNDS"); do
    for side in "${sides[@]}"; do
      if [ "$side" = mlflow ]; then
        run_wrk mlflow "$mode" "$round" "$mlflow_url" "" "$mlflow_pid"
      else
        run_wrk chatmodels "$mode" "$round" "$chatmodels_url" "$chatmodels_key" "$chatmodels_pid"
      fi
    done
  done
done
for side in "${sides[@]}"; do  # the workers' memory after the load
  if [ "$side" = mlflow ]; then pid=$mlflow_pid; else pid=$chatmodels_pid; fi
  tool rss "$pid" >"$results/rss-$side.json"
  stop_server "$pid"
done

if [ -n "${chatmodels_key:-}" ]; then
  log "chatmodels: in-process overhead and profile (bench/overhead.py)"
  "$PY" bench/overhead.py --model echo --key "$chatmodels_key" --n "${BENCH_OVERHEAD_N:-2000}" \
    --json "$results/overhead.json" --profile "$results/profile.txt" \
    >"$results/overhead.txt" 2>&1 || { cat "$results/overhead.txt"; exit 1; }
  sed -n '1,/^cProfile/p' "$results/overhead.txt" | sed '$d'
fi

log "results (raw output in $results/)"
tool report "$results"
