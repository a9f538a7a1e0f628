-- wrk script: POST the benchmark's chat request; prints one JSON line of results at the end.
-- Environment: BENCH_AUTH (an API key, sent as "Authorization: Bearer ..."; empty for none),
-- BENCH_CLOSE=1 (send "Connection: close": a new TCP connection per request), BENCH_BODY (the
-- request body; default: one user message, no model).
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY") or '{"messages":[{"role":"user","content":"Hello!"}]}'
wrk.headers["Content-Type"] = "application/json"
local key = os.getenv("BENCH_AUTH") or ""
if key ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. key
end
if os.getenv("BENCH_CLOSE") == "1" then
  wrk.headers["Connection"] = "close"
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f, ' ..
    '"errors_connect": %d, "errors_read": %d, "errors_write": %d, ' ..
    '"errors_timeout": %d, "non_2xx_3xx": %d}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean, e.connect, e.read, e.write, e.timeout, e.status))
end
