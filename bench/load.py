"""Load generators for bench/serving.sh: slow clients (slowloris) and timed streams.

    python bench/load.py slowloris --port P --key K [--model echo] [--slow 1000] [--phase 10]
    python bench/load.py streams --port P --key K --model stream [--concurrency 500]
                                 [--duration 15] [--server-pid PID]
    python bench/load.py verify-stream --port P --key K --model stream
    python bench/load.py slow-clients --port P --count N --duration S   (slowloris' helper)

Everything connects to 127.0.0.1 only, over raw HTTP/1.1 (asyncio.open_connection), and stops
by itself (every phase and every request is bounded in time). Stdlib only: runs with any
Python 3.10+, in either venv. Each command prints a summary and, with --json FILE, writes the
numbers to FILE.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import resource
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

HOST = "127.0.0.1"  # never anything else
BODY = b'{"messages":[{"role":"user","content":"Hello!"}]}'
STREAM_BODY = b'{"messages":[{"role":"user","content":"Hello!"}],"stream":true}'
STAMP = re.compile(rb'"content":\s*"\s*([0-9]+\.[0-9]+)\s*"')


# ---------------------------------------------------------------------------------------------
# Small helpers


def percentile(values: list[float], q: float) -> float | None:
    """The nearest-rank percentile `q` (0-100) of `values`; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def latency_summary(values: list[float]) -> dict:
    """Count, p50, p99 and max of latencies in seconds, as milliseconds."""

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000, 3)

    return {
        "n": len(values),
        "p50_ms": ms(percentile(values, 50)),
        "p99_ms": ms(percentile(values, 99)),
        "max_ms": ms(max(values) if values else None),
    }


def fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def raise_fd_limit(needed: int) -> int:
    """Raise this process's open-file limit to at least `needed` if the hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def request_bytes(
    method: str, path: str, body: bytes = b"", key: str = "", close: bool = True
) -> bytes:
    """One HTTP/1.1 request, ready to send."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}", "Accept: */*"]
    if key:
        lines.append(f"Authorization: Bearer {key}")
    if body or method == "POST":
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    """The status code and the headers (lower-case names) of a response."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise ValueError(f"not an HTTP response: {lines[0][:80]!r}")
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


async def body_pieces(
    reader: asyncio.StreamReader, headers: dict[str, str]
) -> AsyncIterator[tuple[bytes, float]]:
    """The body as it arrives: (bytes, time.time() when they were read), chunked or not."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers, then the end
                    pass
                return
            data = await reader.readexactly(size)
            arrival = time.time()
            await reader.readexactly(2)
            yield data, arrival
    elif "content-length" in headers:
        left = int(headers["content-length"])
        while left > 0:
            data = await reader.read(min(left, 65536))
            if not data:
                raise asyncio.IncompleteReadError(b"", left)
            left -= len(data)
            yield data, time.time()
    else:  # delimited by the end of the connection
        while data := await reader.read(65536):
            yield data, time.time()


async def read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    return b"".join([data async for data, _ in body_pieces(reader, headers)])


async def close_writer(writer: asyncio.StreamWriter | None) -> None:
    if writer is None:
        return
    writer.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.wait_closed(), 1)


def server_side_established(port: int) -> int:
    """Server-side TCP sockets of `port` in ESTABLISHED state (accepted or in the accept queue)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


def worker_pids(pid: int) -> list[int]:
    """The server's workers: the leaves of the process tree under `pid` (granian's main process
    spawns its workers as children), found through /proc/<pid>/task/*/children."""
    leaves, todo, seen = [], [pid], set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        children: set[int] = set()
        for task in Path(f"/proc/{current}/task").glob("*"):
            with contextlib.suppress(OSError, ValueError):
                children.update(int(c) for c in (task / "children").read_text().split())
        if children:
            todo.extend(children)
        elif current != pid:
            leaves.append(current)
    return sorted(leaves)


def vm_rss_kb(pid: int) -> int | None:
    """VmRSS of `pid` in kB, or None if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class MemorySampler:
    """Samples the VmRSS of each worker of a server (children of its main process) over time."""

    def __init__(self, server_pid: int | None, every: float = 0.5) -> None:
        self.server_pid, self.every = server_pid, every
        self.peak_kb: dict[int, int] = {}
        self.last_kb: dict[int, int] = {}
        self.samples = 0

    def sample(self) -> None:
        if not self.server_pid:
            return
        for pid in worker_pids(self.server_pid):
            kb = vm_rss_kb(pid)
            if kb is not None:
                self.last_kb[pid] = kb
                self.peak_kb[pid] = max(kb, self.peak_kb.get(pid, 0))
        self.samples += 1

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.every)

    def result(self) -> dict:
        main_kb = vm_rss_kb(self.server_pid) if self.server_pid else None
        return {
            "server_pid": self.server_pid,
            "samples": self.samples,
            "every_s": self.every,
            "workers": len(self.peak_kb),
            "worker_peak_rss_mib": {str(p): round(kb / 1024, 1) for p, kb in self.peak_kb.items()},
            "worker_last_rss_mib": {str(p): round(kb / 1024, 1) for p, kb in self.last_kb.items()},
            "max_worker_peak_rss_mib": round(max(self.peak_kb.values()) / 1024, 1)
            if self.peak_kb
            else None,
            "main_process_rss_mib": None if main_kb is None else round(main_kb / 1024, 1),
        }


class LoopLag:
    """How late this client's own event loop wakes up: if it lags, it inflates what it measures."""

    def __init__(self, tick: float = 0.01) -> None:
        self.tick = tick
        self.lags: list[float] = []

    async def run(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(self.tick)
            self.lags.append(time.perf_counter() - started - self.tick)


def write_json(path: str | None, data: dict) -> None:
    if path:
        Path(path).write_text(json.dumps(data, indent=2) + "\n")


# ---------------------------------------------------------------------------------------------
# Ordinary requests, one after the other (the "normal client")


async def timed_request(port: int, raw: bytes, timeout: float) -> tuple[float, str | None]:
    """Send `raw` on a new connection and read the whole answer: (seconds, error or None)."""
    started = time.perf_counter()
    held: list[asyncio.StreamWriter] = []

    async def exchange() -> int:
        reader, writer = await asyncio.open_connection(HOST, port)
        held.append(writer)
        writer.write(raw)
        status, headers = await read_head(reader)
        await read_body(reader, headers)
        return status

    try:
        status = await asyncio.wait_for(exchange(), timeout)
        error = None if status == 200 else f"status {status}"
    except asyncio.TimeoutError:
        error = "timeout"
    except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        error = type(exc).__name__
    elapsed = time.perf_counter() - started
    for writer in held:
        await close_writer(writer)
    return elapsed, error


async def normal_client(port: int, key: str, model: str, seconds: float, timeout: float) -> dict:
    """Alternate POST invocations and GET /health, sequentially, for `seconds`."""
    requests = {
        f"POST /api/models/{model}/invocations": request_bytes(
            "POST", f"/api/models/{model}/invocations", BODY, key
        ),
        "GET /health": request_bytes("GET", "/health"),
    }
    latencies: dict[str, list[float]] = {name: [] for name in requests}
    errors: dict[str, dict[str, int]] = {name: {} for name in requests}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for name, raw in requests.items():
            elapsed, error = await timed_request(port, raw, timeout)
            latencies[name].append(elapsed)  # failed ones too: a timeout is a slow answer
            if error is not None:
                errors[name][error] = errors[name].get(error, 0) + 1
    return {
        name: {
            **latency_summary(latencies[name]),
            "errors": sum(errors[name].values()),
            "error_kinds": errors[name],
        }
        for name in requests
    }


# ---------------------------------------------------------------------------------------------
# Slow clients: connections that send their request headers one byte at a time


class SlowStats:
    def __init__(self) -> None:
        self.open = 0  # connected, and not closed by the server yet
        self.connects = 0
        self.connect_failures = 0
        self.closed_by_server = 0
        self.answers: dict[str, int] = {}  # what the server said before closing


def _slow_bytes(index: int, model: str) -> bytes:
    """A request whose headers never end: the start of a POST, then header after header."""
    start = f"POST /api/models/{model}/invocations HTTP/1.1\r\nHost: {HOST}\r\n"
    return (start + "".join(f"X-Slow-{index}-{n}: {n}\r\n" for n in range(200))).encode()


async def slow_connection(port: int, index: int, interval: float, stats: SlowStats) -> None:
    """Keep one slow connection open: a byte every `interval` s, reconnecting if it is closed."""
    data = _slow_bytes(index, "echo")
    while True:
        writer = None
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 10)
        except (OSError, asyncio.TimeoutError):
            stats.connect_failures += 1
            await asyncio.sleep(interval)
            continue
        stats.connects += 1
        stats.open += 1
        opened = time.monotonic()
        answer = asyncio.ensure_future(reader.read(256))  # done when the server answers or closes
        try:
            position = 0
            while not answer.done():
                writer.write(data[position : position + 1])
                position = (position + 1) % len(data)
                await asyncio.wait({answer}, timeout=interval)
            try:
                first = answer.result()
            except OSError:
                first = b""
            line = first.split(b"\r\n", 1)[0].decode("latin-1")[:40] or "closed without answer"
            stats.answers[line] = stats.answers.get(line, 0) + 1
            stats.closed_by_server += 1
        except (OSError, RuntimeError):  # a write on a connection the server reset
            stats.answers["reset"] = stats.answers.get("reset", 0) + 1
            stats.closed_by_server += 1
        finally:
            stats.open -= 1
            answer.cancel()
            await close_writer(writer)
        if time.monotonic() - opened < interval:  # refused at once: no tight reconnect loop
            await asyncio.sleep(interval)


async def slow_clients(
    port: int, count: int, duration: float, interval: float, rate: float
) -> None:
    """`count` slow connections, opened at `rate` per second; a JSON status line every 0.5 s."""
    raise_fd_limit(count + 256)
    stats = SlowStats()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    started = time.monotonic()
    tasks: list[asyncio.Task] = []

    async def opener() -> None:
        for index in range(count):
            tasks.append(asyncio.ensure_future(slow_connection(port, index, interval, stats)))
            await asyncio.sleep(1 / rate)

    def status(final: bool = False) -> None:
        line = {
            "t": round(time.monotonic() - started, 2),
            "target": count,
            "open": stats.open,
            "server_side_established": server_side_established(port),
            "connects": stats.connects,
            "connect_failures": stats.connect_failures,
            "closed_by_server": stats.closed_by_server,
            "answers": stats.answers,
            "final": final,
        }
        print(json.dumps(line), flush=True)

    opening = asyncio.ensure_future(opener())
    while not stop.is_set() and time.monotonic() - started < duration:
        status()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)
    opening.cancel()
    status(final=True)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def slowloris(args: argparse.Namespace) -> dict:
    """The normal client alone, then with `args.slow` slow connections open, in the same run."""
    print(f"baseline: normal client alone for {args.phase:g} s", flush=True)
    baseline = await normal_client(args.port, args.key, args.model, args.phase, args.timeout)
    child_duration = args.ramp_timeout + args.phase + 15  # it stops by itself in any case
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        os.path.abspath(__file__),
        "slow-clients",
        "--port",
        str(args.port),
        "--count",
        str(args.slow),
        "--duration",
        str(child_duration),
        "--interval",
        str(args.interval),
        "--rate",
        str(args.rate),
        stdout=asyncio.subprocess.PIPE,
    )
    statuses: list[dict] = []

    async def read_statuses() -> None:
        assert child.stdout is not None
        while line := await child.stdout.readline():
            with contextlib.suppress(ValueError):
                statuses.append(json.loads(line))

    reading = asyncio.ensure_future(read_statuses())
    try:
        print(
            f"opening {args.slow} slow connections (1 byte every {args.interval:g} s)", flush=True
        )
        ramp_started = time.monotonic()
        reached = False
        while time.monotonic() - ramp_started < args.ramp_timeout:
            await asyncio.sleep(0.25)
            last = statuses[-1] if statuses else {}
            if last.get("open", 0) >= args.slow and server_side_established(args.port) >= args.slow:
                reached = True
                break
            if child.returncode is not None:
                break
        ramp_seconds = time.monotonic() - ramp_started
        last = statuses[-1] if statuses else {}
        print(
            f"slow connections open: {last.get('open', 0)} of {args.slow} (client side), "
            f"{server_side_established(args.port)} established on the server's port, "
            f"after {ramp_seconds:.1f} s",
            flush=True,
        )
        before = len(statuses)
        counts: list[tuple[int, int]] = []

        async def count_open() -> None:
            while True:
                last = statuses[-1] if statuses else {}
                counts.append((last.get("open", 0), server_side_established(args.port)))
                await asyncio.sleep(0.25)

        counting = asyncio.ensure_future(count_open())
        print(f"with slow clients: normal client for {args.phase:g} s", flush=True)
        loaded = await normal_client(args.port, args.key, args.model, args.phase, args.timeout)
        counting.cancel()
        during = statuses[before:] or statuses[-1:]
    finally:
        if child.returncode is None:
            child.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(child.wait(), 10)
            except asyncio.TimeoutError:
                child.kill()
                await child.wait()
        await asyncio.wait_for(reading, 5)
    final = statuses[-1] if statuses else {}
    client_open = [c for c, _ in counts] or [0]
    server_open = [s for _, s in counts] or [0]
    slow = {
        "target": args.slow,
        "interval_s": args.interval,
        "reached_target": reached,
        "ramp_s": round(ramp_seconds, 2),
        "open_during_measurement": _spread(client_open),
        "server_side_established_during_measurement": _spread(server_open),
        "closed_by_server_during_measurement": (
            during[-1].get("closed_by_server", 0) if during else 0
        )
        - (during[0].get("closed_by_server", 0) if during else 0),
        "connects_total": final.get("connects"),
        "connect_failures_total": final.get("connect_failures"),
        "closed_by_server_total": final.get("closed_by_server"),
        "server_answers": final.get("answers", {}),
    }
    return {
        "scenario": "slowloris",
        "phase_s": args.phase,
        "model": args.model,
        "baseline": baseline,
        "with_slow_clients": loaded,
        "slow_connections": slow,
    }


def _spread(values: list[int]) -> dict:
    return {"min": min(values), "mean": round(sum(values) / len(values), 1), "max": max(values)}


def _spread_text(spread: dict) -> str:
    return f"{spread['min']}/{spread['mean']:g}/{spread['max']}"


def print_slowloris(result: dict, goal_ms: float) -> None:
    slow = result["slow_connections"]
    print(
        f"\nslow connections: target {slow['target']}; open during the measurement (min/mean/max) "
        f"{_spread_text(slow['open_during_measurement'])} client side, "
        f"{_spread_text(slow['server_side_established_during_measurement'])} server side "
        f"(ESTABLISHED on its port); closed by the server: "
        f"{slow['closed_by_server_during_measurement']} during the measurement, "
        f"{slow['closed_by_server_total']} in all (answers: {slow['server_answers']}), "
        f"each reopened at once"
    )
    print(
        f"{'phase':<20} {'request':<36} {'n':>6} {'p50':>10} {'p99':>10} {'max':>10} {'errors':>7}"
    )
    for phase in ("baseline", "with_slow_clients"):
        for name, row in result[phase].items():
            print(
                f"{phase:<20} {name:<36} {row['n']:>6} {fmt_ms(row['p50_ms']):>10} "
                f"{fmt_ms(row['p99_ms']):>10} {fmt_ms(row['max_ms']):>10} {row['errors']:>7}"
            )
    rows = result["with_slow_clients"].values()
    worst = max((row["p99_ms"] or 0) for row in rows)
    errors = sum(row["errors"] for row in rows)
    verdict = "meets" if worst <= goal_ms and not errors and slow["reached_target"] else "MISSES"
    print(
        f"goal: p99 <= {goal_ms:g} ms, no errors, with all {slow['target']} slow connections "
        f"open: {verdict} (worst p99 {worst:.1f} ms, {errors} errors, all open: "
        f"{'yes' if slow['reached_target'] else 'NO'}); latencies count failed requests too"
    )


# ---------------------------------------------------------------------------------------------
# Streams: many concurrent streams of time-stamped chunks


class StreamStats:
    def __init__(self) -> None:
        self.delays: list[float] = []
        self.first_chunk: list[float] = []  # request sent -> first content chunk read
        self.started = 0
        self.completed = 0
        self.chunks = 0
        self.errors: dict[str, int] = {}
        self.not_chunked = 0

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


async def one_stream(
    conn: dict, port: int, raw: bytes, expected: int, stats: StreamStats, counted: bool
) -> None:
    """One stream on `conn` (opened or reused): records each content chunk's delay."""
    if conn.get("writer") is None:
        conn["reader"], conn["writer"] = await asyncio.open_connection(HOST, port)
    reader, writer = conn["reader"], conn["writer"]
    sent = time.time()
    writer.write(raw)
    status, headers = await read_head(reader)
    if headers.get("connection", "").lower() == "close":
        conn["close_after"] = True
    if status != 200:
        await read_body(reader, headers)
        raise _StreamError(f"status {status}")
    if counted and "chunked" not in headers.get("transfer-encoding", "").lower():
        stats.not_chunked += 1
    buffer, stamps, done, failed = b"", 0, False, False
    async for data, arrival in body_pieces(reader, headers):
        buffer += data
        while (end := buffer.find(b"\n\n")) >= 0:
            event, buffer = buffer[:end], buffer[end + 2 :]
            if not event.startswith(b"data:"):
                continue
            payload = event[5:].strip()
            if payload == b"[DONE]":
                done = True
            elif (match := STAMP.search(payload)) is not None:
                stamps += 1
                if counted:
                    stats.delays.append(arrival - float(match.group(1)))
                    if stamps == 1:
                        stats.first_chunk.append(arrival - sent)
            elif b'"error"' in payload:
                failed = True
    if counted:
        stats.chunks += stamps
    if failed:
        raise _StreamError("error event")
    if not done:
        raise _StreamError("no [DONE]")
    if stamps != expected:
        raise _StreamError(f"{stamps} chunks, not {expected}")


class _StreamError(Exception):
    pass


async def stream_worker(
    index: int,
    args: argparse.Namespace,
    raw: bytes,
    stats: StreamStats,
    measure_from: float,
    deadline: float,
) -> None:
    """Run streams back to back on one connection (reconnecting if needed) until `deadline`."""
    await asyncio.sleep(index / args.concurrency * args.ramp)  # spread the starts
    conn: dict = {}
    while time.monotonic() < deadline:
        counted = time.monotonic() >= measure_from
        if counted:
            stats.started += 1
        try:
            await asyncio.wait_for(
                one_stream(conn, args.port, raw, args.chunks, stats, counted), args.timeout
            )
            if counted:
                stats.completed += 1
            ok = not conn.get("close_after")
        except asyncio.TimeoutError:
            ok = False
            if counted:
                stats.error("timeout")
        except _StreamError as error:
            ok = False
            if counted:
                stats.error(str(error))
        except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            ok = False
            if counted:
                stats.error(type(exc).__name__)
        if not ok:
            await close_writer(conn.get("writer"))
            conn = {}
            if time.monotonic() < deadline:
                await asyncio.sleep(0.05)  # no tight loop against a refusing server
    await close_writer(conn.get("writer"))


async def streams(args: argparse.Namespace) -> dict:
    """`args.concurrency` streams at once, back to back, for a warm-up and then `duration` s."""
    raise_fd_limit(args.concurrency + 256)
    raw = request_bytes(
        "POST", f"/api/models/{args.model}/invocations", STREAM_BODY, args.key, close=False
    )
    stats = StreamStats()
    memory = MemorySampler(args.server_pid)
    lag = LoopLag()
    helpers = [asyncio.ensure_future(memory.run()), asyncio.ensure_future(lag.run())]
    started = time.monotonic()
    measure_from = started + args.warmup
    deadline = measure_from + args.duration
    cpu_before = time.process_time()
    print(
        f"{args.concurrency} concurrent streams of {args.model} ({args.chunks} chunks each): "
        f"{args.warmup:g} s warm-up, then {args.duration:g} s measured",
        flush=True,
    )
    workers = [
        asyncio.ensure_future(stream_worker(i, args, raw, stats, measure_from, deadline))
        for i in range(args.concurrency)
    ]
    try:
        # Streams still running at the deadline finish (each is bounded by --timeout).
        await asyncio.wait_for(
            asyncio.gather(*workers), args.warmup + args.duration + args.timeout + 5
        )
    except asyncio.TimeoutError:
        stats.error("unfinished at the end")
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        memory.sample()
        for task in helpers:
            task.cancel()
    wall = time.monotonic() - started
    return {
        "scenario": "streams",
        "model": args.model,
        "concurrency": args.concurrency,
        "chunks_per_stream": args.chunks,
        "warmup_s": args.warmup,
        "duration_s": args.duration,
        "streams_started": stats.started,
        "streams_completed": stats.completed,
        "stream_errors": sum(stats.errors.values()),
        "error_kinds": stats.errors,
        "chunks_received": stats.chunks,
        "chunks_expected": stats.started * args.chunks,
        "responses_not_chunked": stats.not_chunked,
        "chunk_delay": latency_summary(stats.delays),
        "first_chunk_after_request": latency_summary(stats.first_chunk),
        "client_loop_lag": latency_summary(lag.lags),
        "client_cpu_share": round((time.process_time() - cpu_before) / wall, 3),
        "memory": memory.result(),
    }


def print_streams(result: dict, goal_ms: float, goal_mb: float) -> None:
    delay, first, lag = (
        result["chunk_delay"],
        result["first_chunk_after_request"],
        result["client_loop_lag"],
    )
    mem = result["memory"]
    print(
        f"\n{result['model']}: {result['streams_completed']} of {result['streams_started']} "
        f"streams completed, {result['chunks_received']} of {result['chunks_expected']} chunks, "
        f"{result['stream_errors']} errors {result['error_kinds'] or ''}"
    )
    print(
        f"  chunk delay (yield -> arrival): p50 {fmt_ms(delay['p50_ms'])}, p99 "
        f"{fmt_ms(delay['p99_ms'])}, max {fmt_ms(delay['max_ms'])} over {delay['n']} chunks"
    )
    print(
        f"  first chunk after the request: p50 {fmt_ms(first['p50_ms'])}, "
        f"p99 {fmt_ms(first['p99_ms'])}"
    )
    print(
        f"  client: event-loop lag p99 {fmt_ms(lag['p99_ms'])}, max {fmt_ms(lag['max_ms'])}; "
        f"CPU {result['client_cpu_share']:.0%} of a core"
    )
    print(
        f"  server workers ({mem['workers']}), peak VmRSS sampled every {mem['every_s']:g} s: "
        + ", ".join(f"{v:.0f} MiB" for v in mem["worker_peak_rss_mib"].values())
    )
    goal_mib = goal_mb * 1e6 / 2**20
    ok_delay = delay["p99_ms"] is not None and delay["p99_ms"] <= goal_ms
    ok_mem = (
        mem["max_worker_peak_rss_mib"] is not None and mem["max_worker_peak_rss_mib"] <= goal_mib
    )
    complete = (
        result["stream_errors"] == 0 and result["streams_completed"] == result["streams_started"]
    )
    print(
        f"  goal: chunk delay p99 <= {goal_ms:g} ms: {'meets' if ok_delay else 'MISSES'}; "
        f"memory per worker <= {goal_mb:g} MB ({goal_mib:.0f} MiB): "
        f"{'meets' if ok_mem else 'MISSES' if mem['workers'] else 'not measured'}; "
        f"every stream complete: {'yes' if complete else 'NO'}"
    )


async def verify_stream(args: argparse.Namespace) -> int:
    """One stream: 200, chunked, `--chunks` stamped chunks and [DONE]; fail loudly otherwise."""
    raw = request_bytes("POST", f"/api/models/{args.model}/invocations", STREAM_BODY, args.key)
    stats = StreamStats()
    try:
        await asyncio.wait_for(
            one_stream({}, args.port, raw, args.chunks, stats, True), args.timeout
        )
    except (
        _StreamError,
        OSError,
        ValueError,
        asyncio.TimeoutError,
        asyncio.IncompleteReadError,
    ) as error:
        print(
            f"bench: FAILED: stream of {args.model}: {type(error).__name__}: {error}",
            file=sys.stderr,
        )
        return 1
    if stats.not_chunked:
        print(f"bench: FAILED: the stream of {args.model} is not chunked", file=sys.stderr)
        return 1
    delay = latency_summary(stats.delays)
    print(
        f"verified: stream of {args.model} -> 200, chunked, {stats.chunks} stamped chunks and "
        f"[DONE]; chunk delay p50 {fmt_ms(delay['p50_ms'])}, max {fmt_ms(delay['max_ms'])}"
    )
    return 0


# ---------------------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("slowloris", help="normal requests, without then with slow clients")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--key", required=True, help="API key for the invocations")
    p.add_argument("--model", default="echo")
    p.add_argument("--slow", type=int, default=1000, help="slow connections")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between two bytes")
    p.add_argument("--rate", type=float, default=500, help="slow connections opened per second")
    p.add_argument("--phase", type=float, default=10, help="seconds of each measured phase")
    p.add_argument("--ramp-timeout", type=float, default=30, help="seconds to open them all")
    p.add_argument("--timeout", type=float, default=10, help="seconds per normal request")
    p.add_argument("--goal-ms", type=float, default=50)
    p.add_argument("--json")

    p = sub.add_parser("slow-clients", help="(slowloris' helper process) the slow connections")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--duration", type=float, required=True, help="stop after this many seconds")
    p.add_argument("--interval", type=float, default=1.0)
    p.add_argument("--rate", type=float, default=500)

    for name in ("streams", "verify-stream"):
        p = sub.add_parser(name)
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--key", required=True)
        p.add_argument("--model", required=True)
        p.add_argument("--chunks", type=int, default=20, help="content chunks per stream")
        p.add_argument("--timeout", type=float, default=30, help="seconds per stream")
        if name == "streams":
            p.add_argument("--concurrency", type=int, default=500)
            p.add_argument("--duration", type=float, default=15, help="measured seconds")
            p.add_argument("--warmup", type=float, default=2, help="seconds not counted")
            p.add_argument(
                "--ramp", type=float, default=1, help="seconds to spread the starts over"
            )
            p.add_argument("--server-pid", type=int, help="the server's main process (memory)")
            p.add_argument("--goal-ms", type=float, default=20)
            p.add_argument("--goal-mb", type=float, default=250)
            p.add_argument("--json")

    args = parser.parse_args(argv)
    if args.command == "slow-clients":
        asyncio.run(slow_clients(args.port, args.count, args.duration, args.interval, args.rate))
        return 0
    if args.command == "verify-stream":
        return asyncio.run(verify_stream(args))
    if args.command == "slowloris":
        result = asyncio.run(slowloris(args))
        print_slowloris(result, args.goal_ms)
        write_json(args.json, result)
        return 0
    result = asyncio.run(streams(args))
    print_streams(result, args.goal_ms, args.goal_mb)
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
