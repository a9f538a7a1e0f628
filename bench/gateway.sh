#!/usr/bin/env bash
# Forwarding to an upstream LLM, the workload users run, against the peers they would use
# instead, side by side in one run:
#
#   ./bench/gateway.sh            (QUICK=1: a few seconds per run, to check the script)
#
#   forwarder    bench/forwarder.py: one aiohttp server, one pooled aiohttp client, nothing else
#                (the physical limit of forwarding in Python on this machine)
#   litellm      LiteLLM proxy ($WORKERS workers, no database, a master key), in its own venv
#                (bench/.venv-litellm, installed on first use)
#   contrib      chatmodels.contrib:OpenAICompatibleModel behind ./scripts/server
#   custom       examples/upstream_model.py (a custom model on context.http) behind it
#   sdk          examples/openai_sdk_model.py (the openai SDK on aiohttp) behind it
#   baseline     with BENCH_BASELINE=REF: the contrib side's models behind ./scripts/server as of
#                commit REF (before a change, measured beside it)
#
# chatmodels is called on /v1/chat/completions with an API key; usage, limits and metrics on.
# The upstream is bench/upstream.py: it answers at once for the 64-connection runs, after
# 500 ms for the 256 and 1,024 ones (ideal: connections / 0.5 s), and streams 20 time-stamped
# chunks 50 ms apart for the streams run (500 concurrent streams, each chunk's delay from the
# upstream to the client: bench/clients.py streams). The server's CPU time per request is in
# each record. Writes bench/results/<time>-gateway/ (bench/results/latest-gateway).
#
# Environment: BENCH_SIDES (forwarder,litellm,contrib,custom,sdk), BENCH_BASELINE, BENCH_PHASES
# (now,500ms,streams), BENCH_DURATION (s, 20), BENCH_WARMUP (s, 3), BENCH_STREAMS (500),
# WORKERS (2), BENCH_THREADS (wrk's, 2), LITELLM_VERSION (pinned below), BENCH_TIMEOUT (s, 1800).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck shell=bash source=bench/common.sh
source bench/common.sh
bound "${BENCH_TIMEOUT:-1800}"

LITELLM_VERSION=${LITELLM_VERSION:-1.108.7}
LITELLM_VENV=bench/.venv-litellm
SIDES=,${BENCH_SIDES:-forwarder,litellm,contrib,custom,sdk},
PHASES=,${BENCH_PHASES:-now,500ms,streams},
export BENCH_WARMUP=$(sized 1 "${BENCH_WARMUP:-3}")
DURATION=$(sized 3 "${BENCH_DURATION:-20}")
STREAMS=$(sized 50 "${BENCH_STREAMS:-500}")
STREAM_DURATION=$(sized 4 15)
setup_venv
setup_wrk
if [[ $SIDES == *,litellm,* ]] &&
  ! "$LITELLM_VENV/bin/python" -c "import litellm.proxy.proxy_server" 2>/dev/null; then
  log "installing litellm[proxy]==$LITELLM_VERSION into $LITELLM_VENV (once; a few minutes)"
  "${PYTHON:-python3}" -m venv "$LITELLM_VENV"
  "$LITELLM_VENV/bin/pip" install -q --disable-pip-version-check "litellm[proxy]==$LITELLM_VERSION"
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 65536 2>/dev/null || true
workspace gateway
install

# Two upstreams: one answers at once (and streams), one after 500 ms.
declare -A upstream_port
for phase in now 500ms; do
  delay=0
  [ "$phase" = 500ms ] && delay=0.5
  upstream_port[$phase]=$(tool port)
  start "upstream-$phase" "$PY" bench/upstream.py --port "${upstream_port[$phase]}" \
    --delay "$delay" --chunks 20 --interval 0.05
  tool wait-port "${upstream_port[$phase]}" 30 "$pid"
done
upstream_url() { echo "http://127.0.0.1:${upstream_port[$1]}/v1"; }

declare -A base pids auth
if [[ $SIDES == *,forwarder,* ]]; then
  for phase in now 500ms; do
    port=$(tool port)
    start "forwarder-$phase" "$PY" bench/forwarder.py --port "$port" \
      --upstream "http://127.0.0.1:${upstream_port[$phase]}"
    tool wait-port "$port" 30 "$pid"
    base[forwarder-$phase]="http://127.0.0.1:$port" pids[forwarder-$phase]=$pid
  done
  auth[forwarder]=""
fi

if [[ $SIDES == *,litellm,* ]]; then
  cat >"$tmp/litellm.yaml" <<YAML
model_list:
  - model_name: now
    litellm_params: {model: openai/upstream, api_base: "$(upstream_url now)", api_key: none}
  - model_name: 500ms
    litellm_params: {model: openai/upstream, api_base: "$(upstream_url 500ms)", api_key: none}
general_settings:
  master_key: sk-bench
litellm_settings:
  telemetry: false
YAML
  port=$(tool port)
  start litellm env -u DATABASE_URL LITELLM_LOG=ERROR LITELLM_LOCAL_MODEL_COST_MAP=True \
    "$LITELLM_VENV/bin/litellm" \
    --config "$tmp/litellm.yaml" --host 127.0.0.1 --port "$port" --num_workers "$WORKERS"
  tool wait-port "$port" 120 "$pid"
  for phase in now 500ms; do base[litellm-$phase]="http://127.0.0.1:$port" pids[litellm-$phase]=$pid; done
  auth[litellm]=sk-bench
fi

chatmodels_sides=()
for side in contrib custom sdk; do [[ $SIDES == *,$side,* ]] && chatmodels_sides+=("$side"); done
if [ ${#chatmodels_sides[@]} -gt 0 ]; then
  declare -A target=([contrib]=chatmodels.contrib:OpenAICompatibleModel
    [custom]=examples/upstream_model.py:PoliteModel [sdk]=examples/openai_sdk_model.py:OpenAISDKModel)
  for side in "${chatmodels_sides[@]}"; do
    for phase in now 500ms; do
      echo "{\"base_url\": \"$(upstream_url "$phase")\", \"model\": \"upstream\"}" >"$tmp/up.json"
      "$PY" manage.py register_model "$side-$phase" "${target[$side]}" --model-config "$tmp/up.json" \
        >>"$results/register.txt"
    done
  done
  start_chatmodels chatmodels
  for side in "${chatmodels_sides[@]}"; do
    for phase in now 500ms; do base[$side-$phase]="http://127.0.0.1:$port" pids[$side-$phase]=$pid; done
    auth[$side]=$key
  done
fi
if [ -n "${BENCH_BASELINE:-}" ] && [[ $SIDES == *,contrib,* ]]; then
  # The contrib side's models, served by ./scripts/server as of commit BENCH_BASELINE.
  start_baseline baseline "$BENCH_BASELINE"
  for phase in now 500ms; do base[baseline-$phase]="http://127.0.0.1:$port" pids[baseline-$phase]=$pid; done
  auth[baseline]=$key
  SIDES+=baseline,
fi

sides=()
for side in forwarder litellm contrib baseline custom sdk; do [[ $SIDES == *,$side,* ]] && sides+=("$side"); done
# The model each side is asked for in a phase (the forwarder passes any on).
model_of() { case $1 in forwarder | litellm) echo "$2" ;; baseline) echo "contrib-$2" ;; *) echo "$1-$2" ;; esac; }
body_of() { echo "{\"model\":\"$(model_of "$1" "$2")\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello!\"}]}"; }
url_of() { echo "${base[$1-$2]}/v1/chat/completions"; }

for side in "${sides[@]}"; do
  for phase in now 500ms; do
    tool verify "$(url_of "$side" "$phase")" "${auth[$side]}" "Hello from upstream!" \
      "$(body_of "$side" "$phase")"
  done
done

run_phase() {  # PHASE CONNECTIONS
  local phase=$1 c=$2 side ideal=""
  [ "$phase" = 500ms ] && ideal=",ideal=$(awk "BEGIN { print $c / 0.5 }")"
  for side in "${sides[@]}"; do
    log "$phase upstream, $side, $c connections"
    BENCH_BODY=$(body_of "$side" "$phase") wrk_run gateway \
      "upstream=$phase,connections=$c,server=$side$ideal" "${pids[$side-$phase]}" \
      "$(url_of "$side" "$phase")" "${auth[$side]}" -t "${BENCH_THREADS:-2}" -c "$c" \
      -d "${DURATION}s" --timeout 10s
    sleep 2  # what was still in flight drains before the next side
  done
}
export BENCH_BODY
[[ $PHASES == *,now,* ]] && run_phase now 64
if [[ $PHASES == *,500ms,* ]]; then
  run_phase 500ms 256
  run_phase 500ms 1024
fi

if [[ $PHASES == *,streams,* ]]; then
  for side in "${sides[@]}"; do
    url=$(url_of "$side" now)
    if ! "$PY" bench/clients.py streams "$url" "${auth[$side]}" --model "$(model_of "$side" now)" \
      --check; then
      echo "bench: $side did not complete one stream: its streams run is skipped" >&2
      continue  # a peer that collapsed under the runs before does not stop the others' numbers
    fi
    log "$STREAMS concurrent streams through $side"
    "$PY" bench/clients.py streams "$url" "${auth[$side]}" --model "$(model_of "$side" now)" \
      --concurrency "$STREAMS" --duration "$STREAM_DURATION" --server-pid "${pids[$side-now]}" \
      --results "$results" --label "server=$side"
  done
fi

log "results (raw output in $results/)"
tool report "$results"
