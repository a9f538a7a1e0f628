"""Clients for what wrk cannot measure: chunk delays of concurrent streams, a normal client's
latency beside others, calls to a failing model, and abusive connections.

    python bench/clients.py streams URL KEY [--concurrency 500] [--duration 15] [--chunks 20]
                                          [--server-pid PID] [--check]
    python bench/clients.py normal URL KEY [--duration 10] [--concurrency 1] [--rate 0]
                                         [--text Hello!] [--no-health]
    python bench/clients.py calls URL KEY [--count 100] [--concurrency 1] [--timeout 60]
                                        [--duration 0] [--text boom]
    (all three: [--results DIR [--label NAME=VALUE ...]])
    python bench/clients.py slow-headers PORT [--count 1000] [--interval 1]
    python bench/clients.py slow-body PORT [--key KEY] [--path /v1/chat/completions]
                                         [--csrf] [--body-bytes 10000] [--interval 2]
    python bench/clients.py idle-http1 PORT [--path /health]
    python bench/clients.py idle-h2c PORT
    python bench/clients.py stalled-stream PORT --path PATH --key KEY [--text boom]
    (the held connections: [--count 1000] [--status FILE] [--reopen | --no-reopen])

`streams`: CONCURRENCY connections each run streams (`"stream": true`) back to back; each chunk's
content is the `time.time()` at which the server's model made it (bench/models.py's
StreamModel), so its delay is its arrival here minus that stamp (same machine, same clock).
Measures the delays, the first chunk after the request, the server's workers' peak memory
(psutil, every 0.5 s) and this client's own event-loop lag (a lagging client inflates what it
measures). `--check`: one stream, which must be complete, or the command fails.

`normal`: CONCURRENCY callers, each sending one request after another on a new connection, at
RATE requests a second in all (0: back to back), alternating POST URL (the user message TEXT)
and GET /health (unless --no-health), for DURATION seconds: their p50, p99, max and errors by
kind ("503 server_busy", "ClientConnectorError"; a failed request's time counts too).

`calls`: COUNT chat calls saying TEXT (COUNT 0: until DURATION s), CONCURRENCY at a time, each
given up after TIMEOUT s: what each came to ("502 model_crashed", "client gave up after 3 s").

The held connections, raw sockets (no HTTP client sends this slowly, idles like this or stops
reading): COUNT connections opened 500 a second and held until SIGTERM, each reopened when the
server ends it only with --reopen (the default of slow-headers alone). What became of them
(connected, set up, open, ended by the server, how long they had lived since their set-up, what
the server sent) goes to FILE every 0.5 s and is printed at the end.
- `slow-headers`: request headers one byte every INTERVAL s, never finished.
- `slow-body`: a whole request head (Content-Length BODY_BYTES), then the body one byte every
  INTERVAL s: a chat request with the key, or with --csrf a login form (GET PATH first, on the
  same connection, for the CSRF cookie and the form's token).
- `idle-http1`: one GET PATH (HTTP/1.1 keep-alive), its whole response read, then silence.
- `idle-h2c`: HTTP/2 cleartext with prior knowledge, the preface and an empty SETTINGS frame,
  then silence (no SETTINGS acknowledgement); the server's frames counted by type (an HTTP/1
  answer means h2c was refused).
- `stalled-stream`: a streamed chat request saying TEXT, its response headers read, then never
  read again (a 64 KiB receive buffer).

Everything connects to 127.0.0.1 only. With --results, the numbers are appended to DIR/runs.jsonl
(bench/tool.py report shows them); otherwise printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import resource
import signal
import socket
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
        if args.model:
            body["model"] = args.model
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


def outcome(status: int, body: bytes) -> str:
    """A non-200 answer as "STATUS code" (the OpenAI error object's code, when there is one)."""
    try:
        code = json.loads(body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        code = ""
    return f"{status} {code}".strip()


async def normal_client(args: argparse.Namespace) -> dict[str, dict]:
    address = urlsplit(args.url)
    body = {"messages": [{"role": "user", "content": args.text}]}
    requests = {f"POST {address.path}": ("POST", args.url, {"json": body})}
    if args.health:
        requests["GET /health"] = ("GET", f"{address.scheme}://{address.netloc}/health", {})
    times: dict[str, list[float]] = {name: [] for name in requests}
    errors: dict[str, dict[str, int]] = {name: {} for name in requests}
    start = time.monotonic()
    end = start + args.duration
    # Each of CONCURRENCY callers sends every `interval` s (RATE in all), or back to back.
    interval = args.concurrency / args.rate if args.rate else 0.0

    async def caller(http: aiohttp.ClientSession, index: int) -> None:
        due = start + index * interval / args.concurrency
        while True:
            for name, (method, url, options) in requests.items():
                if interval:
                    await asyncio.sleep(max(0.0, due - time.monotonic()))
                    due = max(due + interval, time.monotonic() - interval)  # no catching up
                if time.monotonic() >= end:
                    return
                before = time.perf_counter()
                try:
                    async with http.request(method, url, **options) as response:
                        data = await response.read()
                        error = None if response.status == 200 else outcome(response.status, data)
                except (aiohttp.ClientError, asyncio.TimeoutError) as failure:
                    error = type(failure).__name__
                times[name].append(time.perf_counter() - before)
                if error:
                    errors[name][error] = errors[name].get(error, 0) + 1

    # A new connection per request; a request that takes 10 s has failed.
    async with session(timeout=10, force_close=True) as http:
        http.headers["Authorization"] = f"Bearer {args.key}"
        await asyncio.gather(*(caller(http, i) for i in range(args.concurrency)))
    return {
        name: {
            "requests": len(values),
            **ms(values, "latency"),
            "errors": sum(errors[name].values()),
            **({"error kinds": json.dumps(errors[name])} if errors[name] else {}),
        }
        for name, values in times.items()
    }


def normal(args: argparse.Namespace) -> int:
    for name, measures in asyncio.run(normal_client(args)).items():
        output(args, "normal client", {"request": name}, measures)
    return 0


# ---------------------------------------------------------------------------------------------
# Fault calls


async def fault_calls(args: argparse.Namespace) -> dict:
    """COUNT calls saying TEXT, CONCURRENCY at a time (or until DURATION s when COUNT is 0),
    each given up after TIMEOUT s: what each came to."""
    raise_fd_limit(args.concurrency + 256)
    body = {"messages": [{"role": "user", "content": args.text}]}
    outcomes: dict[str, int] = {}
    times: list[float] = []
    end = time.monotonic() + args.duration if args.duration else math.inf
    left = args.count or math.inf

    async def caller(http: aiohttp.ClientSession) -> None:
        nonlocal left
        while left > 0 and time.monotonic() < end:
            left -= 1
            before = time.perf_counter()
            try:
                async with http.post(args.url, json=body) as response:
                    what = outcome(response.status, await response.read())
            except asyncio.TimeoutError:
                what = f"client gave up after {args.timeout:g} s"
            except aiohttp.ClientError as error:
                what = type(error).__name__
            times.append(time.perf_counter() - before)
            outcomes[what] = outcomes.get(what, 0) + 1

    async with session(timeout=args.timeout, force_close=True) as http:
        http.headers["Authorization"] = f"Bearer {args.key}"
        await asyncio.gather(*(caller(http) for _ in range(args.concurrency)))
    return {"calls": len(times), "outcomes": outcomes, **ms(times, "latency")}


def calls(args: argparse.Namespace) -> int:
    measures = asyncio.run(fault_calls(args))
    print(json.dumps(measures))
    if args.results:
        append_record(args.results, "fault calls", labels_of(args.label), measures)
    return 0


# ---------------------------------------------------------------------------------------------
# Connections held open: slow headers, slow bodies, idle keep-alive, idle h2c, a stalled stream
#
# Raw sockets: no HTTP client sends this slowly, holds a connection this idly or stops reading
# a response. Each command opens COUNT connections (500 a second) and holds them until SIGTERM;
# it writes what happened to --status FILE every 0.5 s, and prints it at the end.

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
H2_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # an empty SETTINGS frame, stream 0
H2_FRAMES = {0: "DATA", 1: "HEADERS", 3: "RST_STREAM", 4: "SETTINGS", 6: "PING", 7: "GOAWAY"}
H2_FRAMES |= {8: "WINDOW_UPDATE"}


class Held:
    """What became of COUNT connections held against the server: how many were made, set up
    (in their abusive state, or failed on the way), are open, were ended by the server (and how
    long they had lived from their set-up until then), and what the server sent them."""

    def __init__(self, args: argparse.Namespace, kind: str) -> None:
        self.args = args
        self.started = time.monotonic()
        self.stats = {"kind": kind, "asked": args.count, "connects": 0, "connect failures": 0}
        self.stats |= {"set up": 0, "open": 0, "ended by the server": 0, "failed": 0}
        self.answers: dict[str, int] = {}
        self.lifetimes: list[float] = []

    def answer(self, what: str) -> None:
        self.answers[what] = self.answers.get(what, 0) + 1

    async def open(self, sock: socket.socket | None = None):
        """A connection to the server, counted as open; None when it could not be made."""
        try:
            if sock is None:
                connecting = asyncio.open_connection("127.0.0.1", self.args.port)
            else:
                await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", self.args.port))
                connecting = asyncio.open_connection(sock=sock)
            reader, writer = await asyncio.wait_for(connecting, 10)
        except (OSError, asyncio.TimeoutError):
            self.stats["connect failures"] += 1
            return None
        self.stats["connects"] += 1
        self.stats["open"] += 1
        return reader, writer

    def ended(
        self, writer: asyncio.StreamWriter, since: float | None, what: str | None, failed=False
    ) -> None:
        """The connection is closed: by the server when `what` says what it did, by us when it
        is None, or because it `failed` here (`what` says how: a request timed out); `since` is
        when it was set up."""
        self.stats["open"] -= 1
        writer.close()
        if what is None:
            return
        self.answer(what)
        if failed:
            self.stats["failed"] += 1
            return
        self.stats["ended by the server"] += 1
        if since is not None:
            self.lifetimes.append(time.monotonic() - since)

    def snapshot(self) -> dict:
        lifetimes = {"lifetime p50 s": percentile(self.lifetimes, 50)}
        lifetimes["lifetime max s"] = max(self.lifetimes) if self.lifetimes else None
        lifetimes = {k: None if v is None else round(v, 1) for k, v in lifetimes.items()}
        elapsed = round(time.monotonic() - self.started, 1)
        return {**self.stats, **lifetimes, "answers": self.answers, "elapsed s": elapsed}

    def write(self) -> None:
        if self.args.status:
            partial = f"{self.args.status}.tmp"
            with open(partial, "w") as out:
                json.dump(self.snapshot(), out)
            os.replace(partial, self.args.status)

    async def run(self, connection) -> int:
        """`connection(set_up)` COUNT times at once (reopened while --reopen), until SIGTERM."""
        raise_fd_limit(self.args.count + 256)
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)

        async def one() -> None:
            first = True

            def set_up() -> None:
                nonlocal first
                self.stats["set up"] += first
                first = False

            while True:
                try:
                    await connection(set_up)
                finally:
                    set_up()
                if not self.args.reopen:
                    return
                await asyncio.sleep(self.args.interval)

        async def report() -> None:
            while True:
                self.write()
                await asyncio.sleep(0.5)

        reporter = asyncio.ensure_future(report())
        tasks = []
        for _ in range(self.args.count):
            if stop.is_set():
                break
            tasks.append(asyncio.ensure_future(one()))
            await asyncio.sleep(0.002)
        await stop.wait()
        reporter.cancel()
        self.write()  # as they were: what the bench scripts read last
        open_when_stopped = self.stats["open"]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, reporter, return_exceptions=True)
        print(json.dumps({**self.snapshot(), "open when stopped": open_when_stopped}), flush=True)
        return 0


def first_line(data: bytes) -> str:
    """What the server sent, in short: its status line, or that it closed."""
    if not data:
        return "closed"
    return data.split(b"\r\n", 1)[0][:60].decode("latin-1")


async def trickle(reader, writer, data: bytes, interval: float, wrap: bool) -> str:
    """Send `data` one byte every `interval` s (from its start again when `wrap`) until the
    server answers or closes: what it did."""
    answer = asyncio.ensure_future(reader.read(256))
    try:
        position = 0
        while not answer.done():
            if position < len(data):
                writer.write(data[position : position + 1])
                position = (position + 1) % len(data) if wrap else position + 1
            await asyncio.wait({answer}, timeout=interval)
        return first_line(answer.result())
    except (OSError, RuntimeError):
        return "reset"
    finally:
        answer.cancel()


async def read_response(reader: asyncio.StreamReader) -> tuple[str, dict[str, list[str]], bytes]:
    """One HTTP/1.1 response: its status line, headers (lower-case names) and body."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    headers: dict[str, list[str]] = {}
    for line in head[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), []).append(value.strip())
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"][0]))
    elif "chunked" in headers.get("transfer-encoding", [""])[0]:
        body = b""
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            body += (await reader.readexactly(size + 2))[:-2]
        await reader.readuntil(b"\r\n")
    else:
        body = b""
    return head[0], headers, body


def request_head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [
        f"{method} {path} HTTP/1.1",
        "Host: 127.0.0.1",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def slow_headers(args: argparse.Namespace) -> int:
    """Request headers one byte every INTERVAL s, never finished (from their start again)."""
    head = "POST /health HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    data = (head + "".join(f"X-Slow-{n}: {n}\r\n" for n in range(200))).encode()
    held = Held(args, "slow-headers")

    async def connection(set_up) -> None:
        opened = await held.open()
        if opened is None:
            return
        reader, writer = opened
        set_up()
        what, since = None, time.monotonic()
        try:
            what = await trickle(reader, writer, data, args.interval, wrap=True)
        finally:
            held.ended(writer, since, what)

    return asyncio.run(held.run(connection))


CSRF_TOKEN = re.compile(rb'name="csrfmiddlewaretoken"\s+value="([^"]+)"')


def slow_body(args: argparse.Namespace) -> int:
    """A whole request head, then its body (BODY_BYTES long) one byte every INTERVAL s: a chat
    request with the key (JSON), or with --csrf a login form after GET PATH on the same
    connection for the CSRF cookie and token."""
    held = Held(args, "slow-body" + (" (login form)" if args.csrf else ""))

    async def connection(set_up) -> None:
        opened = await held.open()
        if opened is None:
            return
        reader, writer = opened
        what, since, failed = None, None, False
        try:
            headers = {"Content-Type": "application/json"}
            if args.csrf:
                writer.write(request_head("GET", args.path, {}))
                status, answer, page = await asyncio.wait_for(read_response(reader), 60)
                cookies = [c.split(";", 1)[0] for c in answer.get("set-cookie", [])]
                token = CSRF_TOKEN.search(page)
                held.answer(f"GET {status}" + ("" if token else ", no CSRF token"))
                headers = {"Content-Type": "application/x-www-form-urlencoded"}
                headers["Cookie"] = "; ".join(cookies)
                start = b"csrfmiddlewaretoken=" + (token.group(1) if token else b"")
                start += b"&username=admin&password="
            else:
                headers["Authorization"] = f"Bearer {args.key}"
                start = b'{"messages": [{"role": "user", "content": "'
            end = b'"}]}' if not args.csrf else b""
            body = start + b"x" * max(0, args.body_bytes - len(start) - len(end)) + end
            headers["Content-Length"] = str(len(body))
            writer.write(request_head("POST", args.path, headers))
            set_up()
            since = time.monotonic()
            what = await trickle(reader, writer, body, args.interval, wrap=False)
        except (OSError, asyncio.IncompleteReadError) as error:
            what = f"ended before the body: {type(error).__name__}"
        except (ValueError, asyncio.TimeoutError) as error:
            what, failed = f"failed before the body: {type(error).__name__}", True
        finally:
            held.ended(writer, since, what, failed)

    return asyncio.run(held.run(connection))


def idle_http1(args: argparse.Namespace) -> int:
    """One request (GET PATH, keep-alive), its whole response read, then silence."""
    held = Held(args, "idle-http1")

    async def connection(set_up) -> None:
        opened = await held.open()
        if opened is None:
            return
        reader, writer = opened
        what, since, failed = None, None, False
        try:
            writer.write(request_head("GET", args.path, {}))
            status, _, _ = await asyncio.wait_for(read_response(reader), 60)
            held.answer(status)
            set_up()
            since = time.monotonic()
            what = first_line(await reader.read(256))  # the server closes it, or says something
        except (OSError, asyncio.IncompleteReadError) as error:
            what = f"ended: {type(error).__name__}"
        except (ValueError, asyncio.TimeoutError) as error:
            what, failed = f"request failed: {type(error).__name__}", True
        finally:
            held.ended(writer, since, what, failed)

    return asyncio.run(held.run(connection))


def idle_h2c(args: argparse.Namespace) -> int:
    """HTTP/2 cleartext with prior knowledge: the connection preface and an empty SETTINGS
    frame, then silence (not even the SETTINGS acknowledgement); every frame the server sends is
    counted by type, an HTTP/1 answer (h2c refused) by its status line."""
    held = Held(args, "idle-h2c")

    async def connection(set_up) -> None:
        opened = await held.open()
        if opened is None:
            return
        reader, writer = opened
        what = None
        writer.write(H2_PREFACE + H2_SETTINGS)
        set_up()
        since = time.monotonic()
        try:
            frame = await reader.readexactly(9)
            if frame.startswith(b"HTTP/"):
                held.answer("HTTP/1 answer: " + first_line(frame + await reader.read(200)))
                while await reader.read(4096):
                    pass
            else:
                while True:
                    length, kind, flags = int.from_bytes(frame[:3], "big"), frame[3], frame[4]
                    payload = await reader.readexactly(length)
                    name = H2_FRAMES.get(kind, f"frame type {kind}")
                    if kind in (4, 6) and flags & 1:
                        name += " ACK"
                    elif kind == 7 and len(payload) >= 8:
                        name += f" (error {int.from_bytes(payload[4:8], 'big')})"
                    held.answer(name)
                    frame = await reader.readexactly(9)
        except asyncio.IncompleteReadError as error:
            what = "closed" if not error.partial else "closed mid-frame"
        except OSError as error:
            what = f"reset ({type(error).__name__})"
        finally:
            held.ended(writer, since, what)

    return asyncio.run(held.run(connection))


def stalled_stream(args: argparse.Namespace) -> int:
    """A streamed chat request saying TEXT; the response's headers read, then nothing more: the
    socket's receive buffer is kept small (64 KiB) and never read."""
    held = Held(args, "stalled-stream")
    body = json.dumps({"messages": [{"role": "user", "content": args.text}], "stream": True})

    async def connection(set_up) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.setblocking(False)
        opened = await held.open(sock)
        if opened is None:
            sock.close()
            return
        reader, writer = opened
        what, failed = None, False
        try:
            headers = {"Content-Type": "application/json", "Authorization": f"Bearer {args.key}"}
            headers["Content-Length"] = str(len(body))
            writer.write(request_head("POST", args.path, headers) + body.encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
            held.answer(first_line(head))
            set_up()
            await asyncio.Event().wait()  # never read again
        except (OSError, asyncio.IncompleteReadError) as error:
            what = f"ended before the headers: {type(error).__name__}"
        except asyncio.TimeoutError:
            what, failed = "no headers within 60 s", True
        finally:
            held.ended(writer, None, what, failed)

    return asyncio.run(held.run(connection))


HELD = {
    "slow-headers": slow_headers,
    "slow-body": slow_body,
    "idle-http1": idle_http1,
    "idle-h2c": idle_h2c,
    "stalled-stream": stalled_stream,
}


# ---------------------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("streams", "normal", "calls"):
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
    p.add_argument("--model", help="the request's model (for /v1/chat/completions routes)")
    p = sub.choices["normal"]
    p.add_argument("--concurrency", type=int, default=1, help="callers at once")
    p.add_argument("--rate", type=float, default=0, help="requests a second in all (0: no wait)")
    p.add_argument("--text", default="Hello!", help="the user message")
    p.add_argument(
        "--health",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="alternate with GET /health",
    )
    p = sub.choices["calls"]
    p.add_argument("--count", type=int, default=100, help="calls in all (0: until --duration)")
    p.add_argument("--concurrency", type=int, default=1, help="calls at once")
    p.add_argument("--timeout", type=float, default=60, help="seconds before a call gives up")
    p.add_argument("--text", default="boom", help="the user message")
    p.set_defaults(duration=0)
    for name in HELD:
        p = sub.add_parser(name)
        p.add_argument("port", type=int)
        p.add_argument("--count", type=int, default=1000)
        p.add_argument("--status", help="write what happened to this JSON file every 0.5 s")
        p.add_argument(
            "--reopen",
            action=argparse.BooleanOptionalAction,
            default=name == "slow-headers",
            help="open a connection again when the server ends it",
        )
        p.add_argument(
            "--interval",
            type=float,
            default=2.0 if name == "slow-body" else 1.0,
            help="seconds between two bytes (and before reopening)",
        )
    for name in ("slow-body", "stalled-stream"):
        sub.choices[name].add_argument("--key", default="", help="the API key")
    p = sub.choices["slow-body"]
    p.add_argument("--path", default="/v1/chat/completions")
    p.add_argument("--body-bytes", type=int, default=10000, help="the body's Content-Length")
    p.add_argument(
        "--csrf",
        action="store_true",
        help="a login form: GET PATH first for the CSRF cookie and token",
    )
    sub.choices["idle-http1"].add_argument("--path", default="/health")
    p = sub.choices["stalled-stream"]
    p.add_argument("--path", required=True, help="a model's invocations route")
    p.add_argument("--text", default="boom", help="the user message")
    args = parser.parse_args(argv)
    if args.command == "streams":
        if args.check:
            args.concurrency = 1
        return streams(args)
    if args.command == "normal":
        return normal(args)
    if args.command == "calls":
        return calls(args)
    return HELD[args.command](args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
