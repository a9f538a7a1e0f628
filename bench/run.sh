#!/usr/bin/env bash
# chatmodels against `mlflow models serve` on the same echo model, side by side:
#
#   ./bench/run.sh          (or: make bench)
#
# Sets up what it needs (the project's .venv, wrk, MLflow in bench/.venv-mlflow), serves both
# with 2 workers on 127.0.0.1, checks each echoes, then loads them in turn with wrk, with
# "Connection: close" (the headline) and then keep-alive, BENCH_ROUNDS rounds each; then
# chatmodels' in-process overhead (bench/overhead.py). Writes bench/results/<time>-echo/
# (bench/results/latest-echo): summary.md (a table) and summary.json, and the raw output.
#
# Environment: BENCH_DURATION (s, 15), BENCH_WARMUP (s, 3), BENCH_CONNECTIONS (16),
# BENCH_THREADS (wrk's, 2), BENCH_ROUNDS (3), BENCH_ONLY=mlflow|chatmodels,
# BENCH_OVERHEAD_N (invocations per batch in overhead.py, 2000), BENCH_TIMEOUT (s, 590).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/common.sh
source bench/common.sh
bound "${BENCH_TIMEOUT:-590}"

export BENCH_WARMUP=${BENCH_WARMUP:-3}
wrk_options=(-t "${BENCH_THREADS:-2}" -c "${BENCH_CONNECTIONS:-16}" -d "${BENCH_DURATION:-15}s"
  --timeout 5s)
sides=()
[ "${BENCH_ONLY:-mlflow}" = mlflow ] && sides+=(mlflow)
[ "${BENCH_ONLY:-chatmodels}" = chatmodels ] && sides+=(chatmodels)

setup_venv
setup_wrk
[[ " ${sides[*]} " == *" mlflow "* ]] && setup_mlflow
workspace echo
install
declare -A url pids auth
for side in "${sides[@]}"; do
  if [ "$side" = mlflow ]; then
    log "MLflow: bench/mlflow_model.py, mlflow models serve -w $WORKERS"
    start_mlflow mlflow
    url[mlflow]="http://127.0.0.1:$port/invocations" auth[mlflow]=""
  else
    log "chatmodels: examples/echo.py, ./scripts/server with $WORKERS workers"
    "$PY" manage.py register_model echo examples/echo.py:EchoModel >"$results/register.txt"
    start_chatmodels chatmodels
    url[chatmodels]="http://127.0.0.1:$port/api/models/echo/invocations" auth[chatmodels]=$key
  fi
  pids[$side]=$pid
  tool verify "${url[$side]}" "${auth[$side]}"
done

# Round after round, the servers one right after the other: other work on the machine weighs on
# both alike.
for mode in close keep-alive; do
  for round in $(seq 1 "${BENCH_ROUNDS:-3}"); do
    for side in "${sides[@]}"; do
      log "$side, $mode, round $round"
      BENCH_CLOSE=$([ "$mode" = close ] && echo 1 || echo 0) wrk_run echo \
        "mode=$mode,server=$side,round=$round" "${pids[$side]}" "${url[$side]}" "${auth[$side]}" \
        "${wrk_options[@]}"
    done
  done
done
for side in "${sides[@]}"; do stop_server "${pids[$side]}"; done

if [ -n "${url[chatmodels]:-}" ]; then
  log "chatmodels: in-process overhead and profile (bench/overhead.py)"
  "$PY" bench/overhead.py --model echo --key "$key" --n "${BENCH_OVERHEAD_N:-2000}" \
    --results "$results" --profile "$results/profile.txt" >"$results/overhead.txt"
fi
log "results (raw output in $results/)"
tool report "$results"
