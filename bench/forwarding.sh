#!/usr/bin/env bash
# The workload users run: a model that forwards to an upstream LLM (bench/upstream.py, answering
# after 500 ms), against the physical limit of forwarding on this machine, a bare aiohttp
# forwarder (bench/forwarder.py) in front of the same upstream, side by side in one run:
#
#   ./bench/forwarding.sh
#
#   forwarder    bench/forwarder.py: one aiohttp server, one pooled aiohttp client, nothing else
#   chatmodels   bench/models.py:AiohttpForwardModel (an aiohttp client on its worker's event
#                loop) behind ./scripts/server ($WORKERS workers), with an API key, usage and
#                metrics on, called on /api/models/forward/invocations
#
#   baseline     with BENCH_BASELINE=REF: the same model behind ./scripts/server as of commit REF
#
# wrk at each of BENCH_CONNECTIONS ("256 1024"); the ideal is connections / 0.5 s. Writes
# bench/results/<time>-forwarding/ (bench/results/latest-forwarding): summary.md, summary.json.
#
# Environment: BENCH_CONNECTIONS, BENCH_DURATION (s, 20), BENCH_WARMUP (s, 3), BENCH_DELAY
# (the upstream's, s, 0.5), WORKERS (2), BENCH_THREADS (wrk's, 2), BENCH_TIMEOUT (s, 900),
# BENCH_BASELINE (a commit to measure beside; unset: none).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/common.sh
source bench/common.sh
bound "${BENCH_TIMEOUT:-900}"

DELAY=${BENCH_DELAY:-0.5}
export BENCH_WARMUP=${BENCH_WARMUP:-3}
setup_venv
setup_wrk
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 65536 2>/dev/null || true
workspace forwarding
install

upstream_port=$(tool port)
start upstream "$PY" bench/upstream.py --port "$upstream_port" --delay "$DELAY"
tool wait-port "$upstream_port" 30 "$pid"
forwarder_port=$(tool port)
start forwarder "$PY" bench/forwarder.py --port "$forwarder_port" \
  --upstream "http://127.0.0.1:$upstream_port"
forwarder=$pid
tool wait-port "$forwarder_port" 30 "$pid"

echo "{\"base_url\": \"http://127.0.0.1:$upstream_port/v1\"}" >"$tmp/forward.json"
"$PY" manage.py register_model forward bench/models.py:AiohttpForwardModel \
  --model-config "$tmp/forward.json" >>"$results/register.txt"
start_chatmodels forwarding
chatmodels=$pid chatmodels_url="http://127.0.0.1:$port/api/models/forward/invocations"

declare -A url=([forwarder]="http://127.0.0.1:$forwarder_port/v1/chat/completions"
  [chatmodels]=$chatmodels_url) auth=([forwarder]="" [chatmodels]=$key)
declare -A pids=([forwarder]=$forwarder [chatmodels]=$chatmodels)
sides=(forwarder chatmodels)
if [ -n "${BENCH_BASELINE:-}" ]; then
  start_baseline baseline "$BENCH_BASELINE"
  url[baseline]="http://127.0.0.1:$port/api/models/forward/invocations" auth[baseline]=$key
  pids[baseline]=$pid
  sides+=(baseline)
fi
for side in "${sides[@]}"; do
  tool verify "${url[$side]}" "${auth[$side]}" "Hello from upstream!"
done
for c in ${BENCH_CONNECTIONS:-256 1024}; do
  for side in "${sides[@]}"; do
    log "forwarding, $side, $c connections"
    wrk_run forwarding "connections=$c,server=$side,ideal=$(awk "BEGIN { print $c / $DELAY }")" \
      "${pids[$side]}" "${url[$side]}" "${auth[$side]}" -t "${BENCH_THREADS:-2}" -c "$c" \
      -d "${BENCH_DURATION:-20}s" --timeout 10s
    tool settle "${url[$side]}" "${auth[$side]}" "$(awk "BEGIN { print $DELAY * 1.5 }")" 30
  done
done

log "results (raw output in $results/)"
tool report "$results"
