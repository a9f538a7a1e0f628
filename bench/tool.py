"""Helpers for the bench scripts: ports, readiness, process figures (psutil), records, the report.

    python bench/tool.py port
    python bench/tool.py wait URL SECONDS PID
    python bench/tool.py wait-port PORT SECONDS PID
    python bench/tool.py verify URL [KEY [EXPECTED]]
    python bench/tool.py settle URL KEY FAST_SECONDS MAX_SECONDS
    python bench/tool.py cpu PID
    python bench/tool.py established PORT
    python bench/tool.py record RESULTS WRK_OUTPUT PID CPU_BEFORE TABLE [LABEL=VALUE ...]
    python bench/tool.py report RESULTS

Each measurement is one record, a JSON line of `RESULTS/runs.jsonl`:
`{"table": ..., "labels": {...}, "measures": {...}}`. `record` makes one from a wrk run (the
BENCH_RESULT line bench/post.lua prints, the server's CPU time around the run, its workers'
memory after it); clients.py,
overhead.py and feature_cost.py append their own. `report` writes `summary.md` (a markdown table
per table name; where records have a `round` label, the median of each measure over the rounds
too) and `summary.json` (every record).
"""

from __future__ import annotations

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


def post(url: str, key: str = "", timeout: float = 10) -> httpx.Response:
    """POST the benchmark's request (`{"messages": [user "Hello!"]}`)."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(url, json=BODY, headers=headers, timeout=timeout, **NO_PROXY)


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


def verify(url: str, key: str = "", expected: str = "Hello!") -> None:
    """POST the benchmark's request once: a 200 chat.completion saying `expected` (the echo of
    "Hello!" by default), or fail."""
    try:
        response = post(url, key, timeout=30)
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


def _table(rows: list[dict]) -> list[str]:
    columns = list(dict.fromkeys(name for row in rows for name in row))
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
    elif command == "record":
        record(Path(args[0]), Path(args[1]), int(args[2]), float(args[3]), args[4], args[5:])
    elif command == "report":
        report(Path(args[0]))
    else:
        fail(f"unknown command {command!r}\n{__doc__}")


if __name__ == "__main__":
    main(sys.argv[1:])
