"""Clients for what wrk cannot measure: chunk delays of concurrent streams, a normal client's
latency beside others, and slow-header connections.

    python bench/clients.py streams URL KEY [--concurrency 500] [--duration 15] [--chunks 20]
                                          [--server-pid PID] [--check]
    python bench/clients.py normal URL KEY [--duration 10]
    (both: [--results DIR [--label NAME=VALUE ...]])
    python bench/clients.py slow-headers PORT [--count 1000] [--interval 1]

`streams`: CONCURRENCY connections each run streams (`"stream": true`) back to back; each chunk's
content is the `time.time()` at which the server's model made it (bench/models.py's
StreamModel), so its delay is its arrival here minus that stamp (same machine, same clock).
Measures the delays, the first chunk after the request, the server's workers' peak memory
(psutil, every 0.5 s) and this client's own event-loop lag (a lagging client inflates what it
measures). `--check`: one stream, which must be complete, or the command fails.

`normal`: one request after another, each on a new connection, alternating POST URL and
GET /health, for DURATION seconds: their p50, p99, max and errors (a failed request's time
counts too).

`slow-headers`: COUNT connections that send request headers one byte every INTERVAL s and never
finish them, each reopened when the server closes it, until SIGTERM; then prints what happened.
The only raw sockets here: no HTTP client sends its headers that slowly.

Everything connects to 127.0.0.1 only. With --results, the numbers are appended to DIR/runs.jsonl
(bench/tool.py report shows them); otherwise printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import resource
import signal
import sys
import time
from urllib.parse import urlsplit

import aiohttp
from tool import append_record, labels_of, rss_mib

STAMP = re.compile(rb'"content":\s*"\s*([0-9]+\.[0-9]+)\s*"')
MESSAGES = [{"role": "user", "content": "Hello!"}]


def percentile(values: list[float], q: float) -> float | None:
    """The nearest-rank percentile `q` (0-100) of `values`; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def ms(values: list[float], name: str) -> dict:
    """p50, p99 and max of `values` (seconds), in milliseconds."""
    out = {}
    for label, value in (("p50", percentile(values, 50)), ("p99", percentile(values, 99))):
        out[f"{name} {label} ms"] = None if value is None else round(value * 1000, 1)
    out[f"{name} max ms"] = round(max(values) * 1000, 1) if values else None
    return out


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        limit = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))


def session(timeout: float = 60, **connector: object) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, **connector),
        timeout=aiohttp.ClientTimeout(total=timeout),
    )


def output(args: argparse.Namespace, table: str, labels: dict, measures: dict) -> None:
    if args.results:
        append_record(args.results, table, {**labels_of(args.label), **labels}, measures)
    print(json.dumps({"table": table, **labels, **measures}))


# ---------------------------------------------------------------------------------------------
# Streams


class StreamFailed(Exception):
    pass


class Streams:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.delays: list[float] = []
        self.first: list[float] = []
        self.started = self.completed = self.chunks = 0
        self.errors: dict[str, int] = {}
        self.peak_mib: dict[int, float] = {}
        self.lags: list[float] = []

    async def one(self, http: aiohttp.ClientSession, counted: bool) -> None:
        """One stream: every stamped chunk's delay; complete with [DONE], or StreamFailed."""
        args = self.args
        body = {"messages": MESSAGES, "stream": True}
        headers = {"Authorization": f"Bearer {args.key}"}
        sent, stamps, done = time.time(), 0, False
        async with http.post(args.url, json=body, headers=headers) as response:
            if response.status != 200:
                raise StreamFailed(f"status {response.status}")
            async for line in response.content:
                arrival = time.time()
                if not line.startswith(b"data:"):
                    continue
                if line[5:].strip() == b"[DONE]":
                    done = True
                elif (match := STAMP.search(line)) is not None:
                    stamps += 1
                    if counted:
                        self.delays.append(arrival - float(match.group(1)))
                        if stamps == 1:
                            self.first.append(arrival - sent)
                elif b'"error"' in line:
                    raise StreamFailed("error event")
        if counted:
            self.chunks += stamps
        if not done or stamps != args.chunks:
            raise StreamFailed(f"{stamps} of {args.chunks} chunks, [DONE] {done}")

    async def worker(self, http: aiohttp.ClientSession, index: int, start: float, end: float):
        await asyncio.sleep(index / self.args.concurrency)  # spread the starts over a second
        while time.monotonic() < end or self.args.check:
            counted = time.monotonic() >= start
            self.started += counted
            try:
                await asyncio.wait_for(self.one(http, counted), 30)
                self.completed += counted
            except (StreamFailed, aiohttp.ClientError, asyncio.TimeoutError) as error:
                if counted:
                    kind = str(error) if isinstance(error, StreamFailed) else type(error).__name__
                    self.errors[kind] = self.errors.get(kind, 0) + 1
                await asyncio.sleep(0.05)  # no tight loop against a refusing server
            if self.args.check:
                return

    async def sample(self) -> None:
        """The server's workers' peak memory, and this loop's lag, every 0.5 s."""
        while True:
            if self.args.server_pid:
                for pid, mib in rss_mib(self.args.server_pid).items():
                    self.peak_mib[pid] = max(mib, self.peak_mib.get(pid, 0))
            before = time.perf_counter()
            await asyncio.sleep(0.5)
            self.lags.append(time.perf_counter() - before - 0.5)

    async def run(self) -> dict:
        args = self.args
        raise_fd_limit(args.concurrency + 256)
        start = time.monotonic() + (0 if args.check else args.warmup)
        end = start + args.duration
        sampler = asyncio.ensure_future(self.sample())
        async with session() as http:
            await asyncio.gather(
                *(self.worker(http, i, start, end) for i in range(args.concurrency))
            )
        sampler.cancel()
        return {
            "streams started": self.started,
            "completed": self.completed,
            "errors": sum(self.errors.values()),
            "error kinds": json.dumps(self.errors) if self.errors else "",
            "chunks": self.chunks,
            **ms(self.delays, "delay"),
            **ms(self.first, "first chunk"),
            "worker peak RSS MiB": " / ".join(f"{v:.0f}" for v in self.peak_mib.values()),
            **ms(self.lags, "client lag"),
        }


def streams(args: argparse.Namespace) -> int:
    measures = asyncio.run(Streams(args).run())
    if args.check:
        if measures["completed"] != 1:
            print(f"bench: FAILED: a stream of {args.url}: {measures}", file=sys.stderr)
            return 1
        print(f"verified: a stream of {args.url}: {measures['chunks']} stamped chunks and [DONE]")
        return 0
    output(args, "streams", {"concurrency": args.concurrency}, measures)
    return 0


# ---------------------------------------------------------------------------------------------
# A normal client


async def normal_client(args: argparse.Namespace) -> dict[str, dict]:
    address = urlsplit(args.url)
    requests = {
        f"POST {address.path}": ("POST", args.url, {"json": {"messages": MESSAGES}}),
        "GET /health": ("GET", f"{address.scheme}://{address.netloc}/health", {}),
    }
    times: dict[str, list[float]] = {name: [] for name in requests}
    errors = dict.fromkeys(requests, 0)
    end = time.monotonic() + args.duration
    # A new connection per request; a request that takes 10 s has failed.
    async with session(timeout=10, force_close=True) as http:
        http.headers["Authorization"] = f"Bearer {args.key}"
        while time.monotonic() < end:
            for name, (method, url, options) in requests.items():
                before = time.perf_counter()
                try:
                    async with http.request(method, url, **options) as response:
                        await response.read()
                        ok = response.status == 200
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    ok = False
                times[name].append(time.perf_counter() - before)
                errors[name] += not ok
    return {
        name: {"requests": len(values), **ms(values, "latency"), "errors": errors[name]}
        for name, values in times.items()
    }


def normal(args: argparse.Namespace) -> int:
    for name, measures in asyncio.run(normal_client(args)).items():
        output(args, "normal client", {"request": name}, measures)
    return 0


# ---------------------------------------------------------------------------------------------
# Slow-header connections


async def slow_headers(args: argparse.Namespace) -> int:
    raise_fd_limit(args.count + 256)
    stats = {"connects": 0, "connect failures": 0, "closed by the server": 0, "open": 0}
    head = "POST /health HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    data = (head + "".join(f"X-Slow-{n}: {n}\r\n" for n in range(200))).encode()

    async def connection() -> None:
        while True:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", args.port), 10
                )
            except (OSError, asyncio.TimeoutError):
                stats["connect failures"] += 1
                await asyncio.sleep(args.interval)
                continue
            stats["connects"] += 1
            stats["open"] += 1
            closed = asyncio.ensure_future(reader.read(256))  # the server answers or closes
            try:
                position = 0
                while not closed.done():
                    writer.write(data[position : position + 1])
                    position = (position + 1) % len(data)
                    await asyncio.wait({closed}, timeout=args.interval)
            except (OSError, RuntimeError):
                pass
            finally:
                stats["open"] -= 1
                stats["closed by the server"] += 1
                closed.cancel()
                writer.close()
            await asyncio.sleep(args.interval)

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    tasks = []
    for _ in range(args.count):  # 500 a second
        tasks.append(asyncio.ensure_future(connection()))
        await asyncio.sleep(0.002)
    await stop.wait()
    for task in tasks:
        task.cancel()
    print(json.dumps(stats), flush=True)
    return 0


# ---------------------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("streams", "normal"):
        p = sub.add_parser(name)
        p.add_argument("url")
        p.add_argument("key")
        p.add_argument("--duration", type=float, default=15 if name == "streams" else 10)
        p.add_argument("--results", help="append the numbers to RESULTS/runs.jsonl")
        p.add_argument("--label", action="append", default=[], help="NAME=VALUE, for the record")
    p = sub.choices["streams"]
    p.add_argument("--concurrency", type=int, default=500)
    p.add_argument("--warmup", type=float, default=2, help="seconds not counted")
    p.add_argument("--chunks", type=int, default=20, help="stamped chunks per stream")
    p.add_argument("--server-pid", type=int, help="the server's main process (memory)")
    p.add_argument("--check", action="store_true", help="one stream, which must be complete")
    p = sub.add_parser("slow-headers")
    p.add_argument("port", type=int)
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--interval", type=float, default=1.0, help="seconds between two bytes")
    args = parser.parse_args(argv)
    if args.command == "streams":
        if args.check:
            args.concurrency = 1
        return streams(args)
    if args.command == "normal":
        return normal(args)
    return asyncio.run(slow_headers(args))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
