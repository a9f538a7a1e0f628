# shellcheck shell=bash
# Shared by the bench scripts, sourced after they cd to the repository: set-up (the project's
# venv, wrk, MLflow's venv), a results folder and a temp folder, a throwaway chatmodels install,
# servers started in their own process group on 127.0.0.1 and stopped when the script ends,
# fails or is interrupted, and wrk runs recorded with the server's CPU time around them.

PY=.venv/bin/python
MLFLOW_VERSION=3.17.2  # the newest MLflow 3 whose mlflow-skinny is published alongside it
MLFLOW_VENV=bench/.venv-mlflow
WORKERS=2
STOP_TRIES=${STOP_TRIES:-40}  # quarter seconds a server has after SIGTERM before it is killed

log() { printf '\n== %s\n' "$*"; }
die() { echo "bench: FAILED: $*" >&2; exit 1; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
tool() { "$PY" bench/tool.py "$@"; }

# sized QUICK_VALUE FULL_VALUE: the first with QUICK=1 (a few seconds per phase, small counts:
# to check a script), the second otherwise.
sized() { if [ "${QUICK:-0}" = 1 ]; then echo "$1"; else echo "$2"; fi; }

# bound SECONDS: run the calling script again under `timeout`, set-up included.
bound() {
  if [ -z "${BENCH_UNDER_TIMEOUT:-}" ]; then
    export BENCH_UNDER_TIMEOUT=1
    exec timeout -k 15 "$1" "$0"
  fi
}

setup_venv() {
  if [ ! -x "$PY" ]; then
    log "creating the project venv (.venv)"
    "${PYTHON:-python3}" -m venv .venv
  fi
  "$PY" -m pip install -q --disable-pip-version-check -r requirements-dev.txt
}

setup_wrk() {
  command -v wrk >/dev/null && return
  log "installing wrk"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
}

setup_mlflow() {
  "$MLFLOW_VENV/bin/python" -c "import mlflow, sys; sys.exit(mlflow.__version__ != '$MLFLOW_VERSION')" \
    2>/dev/null && return
  log "installing mlflow==$MLFLOW_VERSION into $MLFLOW_VENV (once; a few minutes)"
  "${PYTHON:-python3}" -m venv "$MLFLOW_VENV"
  "$MLFLOW_VENV/bin/pip" install -q --disable-pip-version-check "mlflow==$MLFLOW_VERSION"
}

# workspace NAME: sets tmp (removed at the end), results (bench/results/<UTC time>-NAME, linked
# from bench/results/latest-NAME) and servers (the process groups stopped at the end).
workspace() {
  local stamp
  stamp=$(date -u +%Y%m%dT%H%M%SZ)-$1
  results=bench/results/$stamp
  mkdir -p "$results"
  ln -sfn "$stamp" "bench/results/latest-$1"
  tmp=$(mktemp -d)
  servers=()
  trap cleanup EXIT
  trap 'echo "bench: interrupted" >&2; exit 130' INT TERM
  if awk -v limit="${BENCH_MAX_LOAD:-1.0}" '{ exit !($1 > limit) }' /proc/loadavg; then
    echo "bench: WARNING: the machine is busy (load average $(cut -d' ' -f1-3 /proc/loadavg));" \
      "every number will be worse and noisier than on an idle machine" >&2
  fi
}

stop_server() {  # PID: stop a server's whole process group (each is started in its own session)
  kill -TERM -- "-$1" 2>/dev/null || return 0
  for _ in $(seq 1 "$STOP_TRIES"); do
    kill -0 -- "-$1" 2>/dev/null || return 0
    sleep 0.25
  done
  kill -KILL -- "-$1" 2>/dev/null || true
}

cleanup() {
  local pid
  for pid in "${servers[@]}"; do stop_server "$pid"; done
  if [ -d "$tmp/baseline" ]; then git worktree remove --force "$tmp/baseline" >/dev/null 2>&1; fi
  rm -rf "$tmp"
}

# start NAME COMMAND...: COMMAND in a session of its own, its output in $results/server-NAME.log;
# sets pid.
start() {
  local name=$1
  shift
  setsid "$@" >"$results/server-$name.log" 2>&1 &
  pid=$!
  servers+=("$pid")
}

# install: a throwaway chatmodels install in $tmp (SQLite, throttling off, request log off) and
# an API key, $key. Register its models with `"$PY" manage.py register_model NAME FILE:CLASS`.
install() {
  SECRET_KEY=$("$PY" -c 'import secrets; print(secrets.token_urlsafe(50))')
  export SECRET_KEY DEBUG=false SECURE_SSL_REDIRECT=false ALLOWED_HOSTS=127.0.0.1,localhost
  export DATABASE_URL="sqlite:///$tmp/db.sqlite3" CACHE_URL=locmemcache:// AWS_STORAGE_BUCKET_NAME=
  export CHATMODELS_PACKAGE_DIR="$tmp/packages" CHATMODELS_CACHE_DIR="$tmp/cache" ENV_FILE=
  export CHATMODELS_THROTTLE_RATE='' LOG_LEVEL=WARNING DJANGO_SETTINGS_MODULE=project.settings
  "$PY" manage.py migrate --noinput -v 0
  key=$("$PY" manage.py create_api_key bench | tail -n 1)
}

# start_chatmodels NAME [VAR=VALUE ...]: ./scripts/server (granian ASGI, $WORKERS workers) on a
# free port, with those variables; waits for /health. Sets port and pid.
start_chatmodels() {
  local name=$1
  shift
  port=$(tool port)
  start "$name" env HOST=127.0.0.1 PORT="$port" WORKERS="$WORKERS" PYTHON="$PY" "$@" ./scripts/server
  tool wait "http://127.0.0.1:$port/health" 60 "$pid"
}

# start_baseline NAME REF [VAR=VALUE ...]: what start_chatmodels starts, as of the commit REF (a
# detached worktree in $tmp, the same venv, install and models): the design before a change,
# measured beside it. Sets port and pid.
start_baseline() {
  local name=$1 ref=$2
  shift 2
  if [ ! -d "$tmp/baseline" ]; then
    git worktree add --detach "$tmp/baseline" "$ref" >/dev/null 2>&1 || die "no commit $ref"
  fi
  port=$(tool port)
  start "$name" env HOST=127.0.0.1 PORT="$port" WORKERS="$WORKERS" PYTHON="$PWD/$PY" "$@" \
    "$tmp/baseline/scripts/server"
  tool wait "http://127.0.0.1:$port/health" 60 "$pid"
}

# start_mlflow NAME [SLEEP]: bench/mlflow_model.py saved (with SLEEP) and served by
# `mlflow models serve` ($WORKERS uvicorn workers, no access log) on a free port; waits for
# /ping. Sets port and pid.
start_mlflow() {
  local name=$1 root=$PWD
  export MLFLOW_TRACKING_URI="sqlite:///$tmp/mlflow.db"  # MLflow's files stay out of the repo
  "$MLFLOW_VENV/bin/python" -W ignore bench/mlflow_model.py "$tmp/$name" "${2:-0}" \
    >"$results/save-$name.log" 2>&1 || { cat "$results/save-$name.log"; exit 1; }
  port=$(tool port)
  start "$name" env -C "$tmp" PATH="$root/$MLFLOW_VENV/bin:$PATH" UVICORN_ACCESS_LOG=false \
    mlflow models serve -m "$tmp/$name" --env-manager local -w "$WORKERS" -p "$port" -h 127.0.0.1
  tool wait "http://127.0.0.1:$port/ping" 120 "$pid"
}

# wrk_run TABLE LABELS PID URL KEY WRK_OPTIONS...: wrk sends bench/post.lua's request (with KEY;
# BENCH_CLOSE=1 in the environment adds "Connection: close") and the run becomes a record of
# TABLE in $results/runs.jsonl, labelled with LABELS ("name=value,..."), with the CPU time of the
# server's processes (PID and under) per request. With BENCH_WARMUP set, a warm-up run first.
wrk_run() {
  local table=$1 labels=$2 pid=$3 url=$4 key=$5 out cpu
  shift 5
  out="$results/wrk-${table// /-}-${labels//[=,]/-}.txt"
  if [ "${BENCH_WARMUP:-0}" != 0 ]; then
    BENCH_AUTH=$key wrk "$@" -d "${BENCH_WARMUP}s" -s bench/post.lua "$url" >/dev/null
  fi
  cpu=$(tool cpu "$pid")
  BENCH_AUTH=$key wrk "$@" --latency -s bench/post.lua "$url" >"$out"
  # shellcheck disable=SC2086  # one argument per label
  tool record "$results" "$out" "$pid" "$cpu" "$table" ${labels//,/ }
  tail -n 1 "$results/runs.jsonl"
}
