#!/usr/bin/env bash
# What metrics, usage accounting and per-key limits cost an invocation, inside one process:
#
#   ./bench/usage_cost.sh
#
# bench/feature_cost.py in a throwaway install (SQLite, the echo model, a key without limits and
# one with limits too high to refuse anything): batches of invocations through Django's WSGI
# handler, every feature ON against all OFF, interleaved BENCH_ROUNDS times and timed in CPU time;
# then each feature alone. The bar (issue 10): a cost of at most 5%. Writes
# bench/results/<time>-usage/ (bench/results/latest-usage): summary.md and summary.json.
#
# Environment: BENCH_ROUNDS (60), BENCH_FEATURES (";"-separated sets,
# "metrics,usage,limits;metrics;usage;limits"), BENCH_TIMEOUT (s, 900).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/common.sh
source bench/common.sh
bound "${BENCH_TIMEOUT:-900}"

setup_venv
workspace usage
install
"$PY" manage.py register_model echo examples/echo.py:EchoModel >"$results/register.txt"
limited_key=$("$PY" manage.py create_api_key bench-limited --rpm 1000000000 --tpm 1000000000 \
  --monthly-budget 1000000000000 | tail -n 1)
mkdir "$tmp/metrics"
features=${BENCH_FEATURES:-metrics,usage,limits;metrics;usage;limits}
for on in ${features//;/ }; do
  log "ON: $on"
  CHATMODELS_USAGE=true CHATMODELS_METRICS=true PROMETHEUS_MULTIPROC_DIR="$tmp/metrics" \
    "$PY" bench/feature_cost.py --key "$key" --limited-key "$limited_key" --features "$on" \
    --rounds "${BENCH_ROUNDS:-60}" --results "$results"
done
log "results in $results/"
tool report "$results"
