-- wrk script: bench/post.lua's request, sent at a fixed total rate (an open loop, as wrk2 does):
-- each wrk thread sends one request every BENCH_THREADS / BENCH_RATE seconds, on whichever of
-- its connections is free, however long the answers take. Give it enough connections (-c) that
-- one is always free. Environment: BENCH_RATE (requests per second in all), BENCH_THREADS (wrk's
-- -t), and bench/post.lua's BENCH_AUTH.
dofile("bench/post.lua")

local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
  int clock_gettime(int clock_id, bench_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
local clock = ffi.new("bench_timespec")

local function now_ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, clock)
  return tonumber(clock.tv_sec) * 1000 + tonumber(clock.tv_nsec) / 1e6
end

local interval = 1000 * tonumber(os.getenv("BENCH_THREADS") or "2") /
  tonumber(os.getenv("BENCH_RATE") or "1000")
local due = nil

function delay()
  local now = now_ms()
  if due == nil or due < now - 1000 then
    due = now -- the start, or fallen a second behind: do not burst to catch up
  end
  local wait = due - now
  due = due + interval
  if wait < 0 then
    return 0
  end
  return wait
end
