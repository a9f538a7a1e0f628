"""Helpers for the bench scripts: ports, readiness, process figures (psutil), records, the report.

    python bench/tool.py port
    python bench/tool.py wait URL SECONDS PID
    python bench/tool.py wait-port PORT SECONDS PID
    python bench/tool.py verify URL [KEY [EXPECTED [BODY]]]
    python bench/tool.py settle URL KEY FAST_SECONDS MAX_SECONDS
    python bench/tool.py cpu PID
    python bench/tool.py established PORT
    python bench/tool.py state PID BASE_URL
    python bench/tool.py watch PID SECONDS
    python bench/tool.py wait-held STATUS_FILE COUNT SECONDS
    python bench/tool.py combine RESULTS TABLE PHASE_DIR [LABEL=VALUE ...] [--quiet DIR]
    python bench/tool.py record RESULTS WRK_OUTPUT PID CPU_BEFORE TABLE [LABEL=VALUE ...]
    python bench/tool.py report RESULTS

Each measurement is one record, a JSON line of `RESULTS/runs.jsonl`:
`{"table": ..., "labels": {...}, "measures": {...}}`. `record` makes one from a wrk run (the
BENCH_RESULT line bench/post.lua prints, the server's CPU time around the run, its workers'
memory after it); `combine` makes one from what a phase of
abuse.sh or faults.sh left in its folder; clients.py, overhead.py and feature_cost.py append their
own. `report` writes `summary.md` (a markdown table
per table name; where records have a `round` label, the median of each measure over the rounds
too) and `summary.json` (every record).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import time
from pathlib import Path

import httpx
import psutil

BODY = {"messages": [{"role": "user", "content": "Hello!"}]}
NO_PROXY = {"trust_env": False}  # 127.0.0.1 only: no proxy from the environment


def fail(message: str) -> None:
    print(f"bench: FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def post(url: str, key: str = "", timeout: float = 10, body: dict | None = None) -> httpx.Response:
    """POST the benchmark's request (`{"messages": [user "Hello!"]}`), or `body`."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(url, json=body or BODY, headers=headers, timeout=timeout, **NO_PROXY)


def wait(url: str, seconds: float, pid: int) -> None:
    """Poll `url` until it answers 200; fail if the server process exits or time runs out."""
    deadline, last = time.monotonic() + seconds, "no answer"
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid):
            fail(f"the server (pid {pid}) exited before {url} answered")
        try:
            status = httpx.get(url, timeout=2, **NO_PROXY).status_code
            if status == 200:
                return
            last = f"status {status}"
        except httpx.HTTPError as error:
            last = repr(error)
        time.sleep(0.25)
    fail(f"{url} did not answer 200 within {seconds:.0f} s (last: {last})")


def wait_port(port: int, seconds: float, pid: int) -> None:
    """Wait until something accepts connections on 127.0.0.1:`port`; fail if `pid` exits."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid):
            fail(f"the server (pid {pid}) exited before port {port} was open")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    fail(f"nothing listens on port {port} after {seconds:.0f} s")


def verify(url: str, key: str = "", expected: str = "Hello!", body: str = "") -> None:
    """POST the benchmark's request (or the JSON `body`) once: a 200 chat.completion saying
    `expected` (the echo of "Hello!" by default), or fail."""
    try:
        response = post(url, key, timeout=30, body=json.loads(body) if body else None)
    except httpx.HTTPError as error:
        fail(f"POST {url}: {error!r}")
    try:
        content = response.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        content = None
    if response.status_code != 200 or content != expected:
        fail(f"POST {url} answered {response.status_code}, not {expected!r}: {response.text[:500]}")
    print(f"verified: POST {url} -> 200, echo {content!r}")


def settle(url: str, key: str, fast: float, seconds: float) -> None:
    """POST until one answer takes at most `fast` s: what an earlier load left queued is done,
    so the next measurement does not share the machine with it. Warns after `seconds`."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        before = time.monotonic()
        try:
            ok = post(url, key, timeout=max(1.0, seconds)).status_code == 200
        except httpx.HTTPError:
            ok = False
        if ok and time.monotonic() - before <= fast:
            return
        if not ok:
            time.sleep(0.5)
    print(
        f"bench: WARNING: {url} not answering within {fast} s after {seconds:.0f} s",
        file=sys.stderr,
    )


def tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of `pid` and every process under it."""
    total = 0.0
    for process in tree(pid):
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def workers(pid: int) -> list[psutil.Process]:
    """A server's workers: the leaves of its process tree (granian's and uvicorn's workers),
    less multiprocessing's helper."""
    leaves = []
    for process in tree(pid)[1:]:
        try:
            if not process.children() and "resource_tracker" not in " ".join(process.cmdline()):
                leaves.append(process)
        except psutil.NoSuchProcess:
            continue
    return leaves


def rss_mib(pid: int) -> dict[int, float]:
    """Resident memory of each worker, in MiB."""
    sizes = {}
    for process in workers(pid):
        try:
            sizes[process.pid] = round(process.memory_info().rss / 2**20, 1)
        except psutil.NoSuchProcess:
            continue
    return sizes


def established(port: int) -> int:
    """Server-side TCP connections of `port` that are ESTABLISHED (accepted or queued)."""
    return sum(
        1
        for conn in psutil.net_connections(kind="tcp")
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_ESTABLISHED
    )


def _alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def sample(pid: int) -> dict:
    """Threads, resident memory (MiB) and processes of `pid`'s whole tree (the server, its
    workers, the workers' model processes), added up."""
    threads = rss = count = 0
    try:
        processes = tree(pid)
    except psutil.NoSuchProcess:
        processes = []
    for process in processes:
        try:
            threads += process.num_threads()
            rss += process.memory_info().rss
            count += 1
        except psutil.NoSuchProcess:
            continue
    return {"threads": threads, "RSS MiB": round(rss / 2**20, 1), "processes": count}


def in_flight(base_url: str) -> float | str:
    """Chat requests in flight by the server's own count (GET /metrics, open to its own host):
    the sum of `chatmodels_in_flight_requests`; what went wrong otherwise."""
    try:
        response = httpx.get(base_url + "/metrics", timeout=5, **NO_PROXY)
    except httpx.HTTPError as error:
        return f"no answer ({type(error).__name__})"
    if response.status_code != 200:
        return f"status {response.status_code}"
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in response.text.splitlines()
        if line.startswith("chatmodels_in_flight_requests")
    )


def state(pid: int, base_url: str) -> dict:
    """A server seen from outside: whether its main process is alive, its tree's threads, memory
    and processes, its direct children (a replaced worker shows as a new pid), the status of
    GET /health and the chat requests in flight."""
    try:
        root = psutil.Process(pid)
        children = [child.pid for child in root.children()]
    except psutil.NoSuchProcess:
        root, children = None, []
    try:
        health: int | str = httpx.get(base_url + "/health", timeout=5, **NO_PROXY).status_code
    except httpx.HTTPError as error:
        health = f"no answer ({type(error).__name__})"
    return {
        "alive": root is not None and _alive(root),
        **sample(pid),
        "children": children,
        "health": health,
        "in flight": in_flight(base_url),
    }


def watch(pid: int, seconds: float, every: float = 0.5) -> dict:
    """`sample` every `every` s for `seconds`: first, peak and last of each, and the series."""
    series = []
    started = time.monotonic()
    while True:
        series.append({"t": round(time.monotonic() - started, 1), **sample(pid)})
        left = started + seconds - time.monotonic()
        if left <= 0:
            break
        time.sleep(min(every, left))
    out: dict = {}
    for name in ("threads", "RSS MiB", "processes"):
        values = [point[name] for point in series]
        out |= {f"{name} first": values[0], f"{name} peak": max(values), f"{name} last": values[-1]}
    return {**out, "series": series}


def wait_held(status_file: Path, count: int, seconds: float) -> None:
    """Wait until the abusive client writing `status_file` has set up `count` connections (each
    connected and in its abusive state, or failed); say how far it got."""
    deadline, status = time.monotonic() + seconds, {}
    while time.monotonic() < deadline:
        try:
            status = json.loads(status_file.read_text())
        except (OSError, ValueError):
            status = {}
        if status.get("set up", 0) >= count:
            break
        time.sleep(0.25)
    print(
        f"{status.get('set up', 0)} of {count} connections set up, {status.get('open', 0)} open,"
        f" {status.get('connect failures', 0)} connect failures"
    )


# ---------------------------------------------------------------------------------------------
# Records and the report


def append_record(results: str | Path, table: str, labels: dict, measures: dict) -> None:
    record = {"table": table, "labels": labels, "measures": measures}
    with open(Path(results) / "runs.jsonl", "a") as out:
        out.write(json.dumps(record) + "\n")


def labels_of(pairs: list[str]) -> dict:
    labels = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        labels[name] = int(value) if value.isdigit() else value
    return labels


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _chat(directory: Path) -> dict:
    """The normal client's chat request (its POST) in a phase's folder."""
    try:
        lines = (directory / "normal.jsonl").read_text().splitlines()
    except OSError:
        return {}
    for line in lines:
        if line.startswith("{") and json.loads(line).get("request", "").startswith("POST"):
            return json.loads(line)
    return {}


def _ratio(value: object, base: object) -> float | None:
    if isinstance(value, int | float) and isinstance(base, int | float) and base > 0:
        return round(value / base, 2)
    return None


def _counts(counts: dict) -> str:
    return ", ".join(f"{name}: {n}" for name, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def combine(
    results: Path,
    table: str,
    directory: Path,
    pairs: list[str],
    quiet: Path | None,
    show_quiet: bool,
) -> None:
    """One record of TABLE from what a phase left in `directory`: the normal client's chat
    latency (`normal.jsonl`, ratios to the one in `quiet`), the abusive connections
    (`held-start.json` when they were set up, `held-end.json` at the phase's end,
    `established.txt`), the fault calls (`calls.json`), the server's state before the phase, its
    peak during it, its state after and, where taken, later (`before.json`, `during.json`,
    `after.json`, `late.json`). The abusive connections' details go to a second table,
    "TABLE: connections"."""
    labels, m = labels_of(pairs), {}
    start, end = _json(directory / "held-start.json"), _json(directory / "held-end.json")
    if end:
        m["connections"] = end["asked"]
        m["open at start"] = start.get("open")
        m["open at end"] = end["open"]
        m["ended by server"] = end["ended by the server"]
    if (directory / "established.txt").exists():
        m["server ESTABLISHED at end"] = int((directory / "established.txt").read_text())
    chat = _chat(directory)
    base = _chat(quiet) if quiet else {}
    if show_quiet and base:
        m["quiet p50 ms"], m["quiet p99 ms"] = base["latency p50 ms"], base["latency p99 ms"]
    if chat:
        m["requests"] = chat["requests"]
        m["p50 ms"] = chat["latency p50 ms"]
        m["p50 / quiet"] = _ratio(chat["latency p50 ms"], base.get("latency p50 ms"))
        m["p99 ms"] = chat["latency p99 ms"]
        m["p99 / quiet"] = _ratio(chat["latency p99 ms"], base.get("latency p99 ms"))
        m["max ms"] = chat["latency max ms"]
        m["errors"] = chat["errors"]
        m["error kinds"] = chat.get("error kinds") or None
    calls = _json(directory / "calls.json")
    if calls:
        m["fault calls"] = calls["calls"]
        m["fault outcomes"] = _counts(calls["outcomes"])
    before, during, after = (_json(directory / f"{n}.json") for n in ("before", "during", "after"))
    for name in ("threads", "RSS MiB", "processes"):
        m[f"{name} before"] = before.get(name)
        m[f"{name} peak"] = during.get(f"{name} peak")
        m[f"{name} after"] = after.get(name)
    if after:
        m["in flight after"] = after["in flight"]
        m["workers replaced"] = len(set(before.get("children", [])) - set(after["children"]))
        m["alive after"] = "yes" if after["alive"] else "NO"
        m["/health after"] = after["health"]
    late = _json(directory / "late.json")
    if late:
        m |= {"threads late": late["threads"], "RSS MiB late": late["RSS MiB"]}
        m["in flight late"] = late["in flight"]
    m["load avg"] = os.getloadavg()[0]
    append_record(results, table, labels, {k: v for k, v in m.items() if v is not None})
    if end:
        details = {k: end.get(k) for k in ("asked", "connects", "connect failures", "failed")}
        details["set up"] = end.get("set up")
        details |= {"open at start": start.get("open"), "open at end": end["open"]}
        details |= {
            k: end.get(k) for k in ("ended by the server", "lifetime p50 s", "lifetime max s")
        }
        details["what the server did"] = _counts(end.get("answers", {}))
        details = {k: v for k, v in details.items() if v is not None}
        append_record(results, f"{table}: connections", {**labels, "kind": end["kind"]}, details)


def wrk_measures(output: Path) -> dict:
    """wrk's numbers from bench/post.lua's BENCH_RESULT line."""
    for line in output.read_text().splitlines():
        if line.startswith("BENCH_RESULT "):
            raw = json.loads(line[len("BENCH_RESULT ") :])
            break
    else:
        fail(f"no BENCH_RESULT line in {output}")
    return {
        "req/s": round(raw["requests"] / (raw["duration_us"] / 1e6), 1),
        "requests": raw["requests"],
        "p50 ms": round(raw["p50_us"] / 1000, 1),
        "p99 ms": round(raw["p99_us"] / 1000, 1),
        "errors": sum(v for k, v in raw.items() if k.startswith("errors_")),
        "timeouts": raw["errors_timeout"],
        "non-2xx": raw["non_2xx_3xx"],
    }


def record(results: Path, output: Path, pid: int, cpu_before: float, table: str, pairs) -> None:
    """One wrk run as a record, with the server's CPU per request and the load average."""
    measures = wrk_measures(output)
    spent = cpu_seconds(pid) - cpu_before
    if measures["requests"]:
        measures["server CPU µs/request"] = round(spent / measures["requests"] * 1e6)
    labels = labels_of(pairs)
    if "ideal" in labels:  # requests per second the server would answer with no queueing
        measures["% of ideal"] = round(100 * measures["req/s"] / float(labels.pop("ideal")))
    measures["worker RSS MiB"] = round(sum(rss_mib(pid).values()))
    measures["load avg"] = os.getloadavg()[0]
    append_record(results, table, labels, measures)
    if measures["errors"] or measures["non-2xx"]:
        print(f"bench: WARNING: {output.name}: errors or non-2xx answers", file=sys.stderr)


def _cell(value: object) -> str:
    if isinstance(value, float):  # 1,234.5; 12.5; 1.103
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _columns(rows: list[dict]) -> list[str]:
    """Every row's columns, each new one placed after the column it follows in its row."""
    columns: list[str] = []
    for row in rows:
        position = 0
        for name in row:
            if name in columns:
                position = columns.index(name) + 1
            else:
                columns.insert(position, name)
                position += 1
    return columns


def _table(rows: list[dict]) -> list[str]:
    columns = _columns(rows)
    return [
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
        *("| " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |" for row in rows),
    ]


def _medians(records: list[dict]) -> list[dict]:
    """The median of each measure over the rounds of records alike in every other label."""
    groups: dict[str, list[dict]] = {}
    for rec in records:
        labels = {k: v for k, v in rec["labels"].items() if k != "round"}
        groups.setdefault(json.dumps(labels), []).append(rec)
    rows = []
    for key, group in groups.items():
        row = {**json.loads(key), "rounds": len(group)}
        for name in group[0]["measures"]:
            values = [
                r["measures"][name]
                for r in group
                if isinstance(r["measures"].get(name), int | float)
            ]
            if values:
                row[name] = statistics.median(values)
        rows.append(row)
    return rows


def report(results: Path) -> None:
    records = [json.loads(line) for line in (results / "runs.jsonl").read_text().splitlines()]
    tables: dict[str, list[dict]] = {}
    for rec in records:
        tables.setdefault(rec["table"], []).append(rec)
    lines = [f"# {results.name}", ""]
    for name, recs in tables.items():
        lines += [f"## {name}", "", *_table([{**r["labels"], **r["measures"]} for r in recs]), ""]
        if any("round" in r["labels"] for r in recs):
            lines += [f"{name}, median over the rounds:", "", *_table(_medians(recs)), ""]
    text = "\n".join(lines)
    print(text)
    (results / "summary.md").write_text(text)
    (results / "summary.json").write_text(json.dumps(records, indent=2) + "\n")


def main(argv: list[str]) -> None:
    if not argv:
        fail(__doc__)
    command, args = argv[0], argv[1:]
    if command == "port":
        print(free_port())
    elif command == "wait":
        wait(args[0], float(args[1]), int(args[2]))
    elif command == "wait-port":
        wait_port(int(args[0]), float(args[1]), int(args[2]))
    elif command == "verify":
        verify(*args)
    elif command == "settle":
        settle(args[0], args[1], float(args[2]), float(args[3]))
    elif command == "cpu":
        print(f"{cpu_seconds(int(args[0])):.2f}")
    elif command == "established":
        print(established(int(args[0])))
    elif command == "state":
        print(json.dumps(state(int(args[0]), args[1])))
    elif command == "watch":
        print(json.dumps(watch(int(args[0]), float(args[1]))))
    elif command == "wait-held":
        wait_held(Path(args[0]), int(args[1]), float(args[2]))
    elif command == "combine":
        parser = argparse.ArgumentParser(prog="tool.py combine")
        parser.add_argument("results", type=Path)
        parser.add_argument("table")
        parser.add_argument("directory", type=Path)
        parser.add_argument("labels", nargs="*")
        parser.add_argument("--quiet", type=Path, help="the quiet phase's folder")
        parser.add_argument("--show-quiet", action="store_true", help="its p50 and p99 too")
        o = parser.parse_args(args)
        combine(o.results, o.table, o.directory, o.labels, o.quiet, o.show_quiet)
    elif command == "record":
        record(Path(args[0]), Path(args[1]), int(args[2]), float(args[3]), args[4], args[5:])
    elif command == "report":
        report(Path(args[0]))
    else:
        fail(f"unknown command {command!r}\n{__doc__}")


if __name__ == "__main__":
    main(sys.argv[1:])
