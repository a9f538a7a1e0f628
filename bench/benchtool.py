"""Small stdlib-only helpers for bench/run.sh: ports, readiness, echo checks, memory, the report.

    python bench/benchtool.py port
    python bench/benchtool.py wait URL SECONDS PID
    python bench/benchtool.py verify URL [KEY]
    python bench/benchtool.py send URL KEY N
    python bench/benchtool.py rss PID
    python bench/benchtool.py cpu PID
    python bench/benchtool.py cpu-group PGID
    python bench/benchtool.py report RESULTS_DIR
    python bench/benchtool.py settle URL KEY FAST_SECONDS MAX_SECONDS
    python bench/benchtool.py meta OUT_JSON [KEY=VALUE ...]
    python bench/benchtool.py serving-report RESULTS_DIR

    python bench/benchtool.py cost-report RESULTS_DIR ON_ENV OFF_ENV

`report` is bench/run.sh's; `settle`, `meta` and `serving-report` are bench/serving.sh's;
`cpu-group`, `send` and `cost-report` are bench/usage_cost.sh's.
Runs with any Python 3.10+ (no third-party imports), so either venv can run it.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import statistics
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

BODY = {"messages": [{"role": "user", "content": "Hello!"}]}
SERVERS = {"chatmodels": "chatmodels (granian WSGI)", "mlflow": "mlflow models serve (uvicorn)"}
TARGET_RATIO = 4  # issue 8: chatmodels' throughput at least 4x MLflow's, with Connection: close
MODES = {"close": "Connection: close", "keepalive": "keep-alive"}


def fail(message: str) -> None:
    print(f"bench: FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait(url: str, seconds: float, pid: int) -> None:
    """Poll `url` until it answers 200; fail if the server process exits or time runs out."""
    deadline = time.monotonic() + seconds
    last = "no answer"
    while time.monotonic() < deadline:
        if not alive(pid):
            fail(f"the server (pid {pid}) exited before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
                last = f"status {response.status}"
        except urllib.error.HTTPError as error:
            last = f"status {error.code}"
        except OSError as error:
            last = str(error)
        time.sleep(0.25)
    fail(f"{url} did not answer 200 within {seconds:.0f} s (last: {last})")


def _post(url: str, key: str, timeout: float) -> tuple[int, str]:
    """POST the benchmark's request: (status, body text); status 0 when there is no answer."""
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(
        url, data=json.dumps(BODY).encode(), headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")
    except OSError as error:
        return 0, str(error)


def send(url: str, key: str, count: int) -> None:
    """POST the benchmark's request `count` times, one after another on one connection; each
    must answer 200 (a steady, known number of requests, for counting what they cost)."""
    address = urllib.parse.urlsplit(url)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    body = json.dumps(BODY)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=300)
    for number in range(1, count + 1):
        connection.request("POST", address.path, body, headers)
        response = connection.getresponse()
        text = response.read()
        if response.status != 200:
            fail(f"request {number} of {count} to {url}: {response.status} {text[:300]!r}")
    connection.close()
    print(f"sent: {count} requests to {url}, each answered 200")


def settle(url: str, key: str, fast: float, seconds: float) -> None:
    """POST until one answer takes at most `fast` s: what an earlier load left queued is done.

    A server that queues requests (MLflow's thread pool) is still working through the requests
    wrk had in flight when it stopped; the next measurement, of either server, must not share
    the machine with that leftover work. Gives up (with a warning) after `seconds`.
    """
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        before = time.monotonic()
        status, _ = _post(url, key, timeout=max(1.0, seconds - (before - started)))
        took = time.monotonic() - before
        if status == 200 and took <= fast:
            print(
                f"settled: {url} answered in {took:.2f} s, {before - started:.1f} s after the load"
            )
            return
        if status != 200:
            time.sleep(0.5)
    print(
        f"bench: WARNING: {url} did not answer within {fast} s for {seconds:.0f} s", file=sys.stderr
    )


def verify(url: str, key: str = "") -> None:
    """POST the benchmark's request once; it must be a 200 chat.completion echoing "Hello!"."""
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(
        url, data=json.dumps(BODY).encode(), headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read().decode(errors="replace")
    except OSError as error:
        fail(f"POST {url}: {error}")
    if status != 200:
        fail(f"POST {url} answered {status}: {text[:500]}")
    try:
        content = json.loads(text)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        fail(f"POST {url} answered 200 but not a chat completion: {text[:500]}")
    if content != "Hello!":
        fail(f"POST {url} did not echo 'Hello!': {text[:500]}")
    print(f"verified: POST {url} -> 200, echo {content!r}: {text}")


# ---------------------------------------------------------------------------------------------
# Memory: VmRSS of a server's worker processes, read from /proc (no psutil).


def _proc_table() -> dict[int, int]:
    """pid -> parent pid for every process we can see."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat_fields(entry)) is not None:
            parents[int(entry)] = int(fields[1])
    return parents


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")


def _tree(root: int) -> list[int]:
    """`root` and all its descendants."""
    children: dict[int, list[int]] = {}
    for pid, parent in _proc_table().items():
        children.setdefault(parent, []).append(pid)
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def cpu_seconds(root: int) -> float:
    """User + system CPU time of every process in the tree under `root`, in seconds."""
    ticks = 0
    for pid in _tree(root):
        if (fields := _stat_fields(str(pid))) is not None:
            ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: str) -> list[str] | None:
    """The fields of /proc/PID/stat from the 3rd (state) on; None once the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: the fields start after the last ")".
    return stat[stat.rindex(")") + 2 :].split()


def cpu_group(pgid: int) -> dict:
    """CPU ticks (utime + stime) of each process in process group `pgid`, at this moment.

    Keyed by "pid:starttime", so a pid reused between two snapshots is not taken for the same
    process. Children's times (cutime, cstime) are left out: they are the CPU of children that
    have exited and been waited for, not of the server's running processes.
    """
    ticks = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(entry)
        if fields is None or int(fields[2]) != pgid:  # fields[2]: pgrp (field 5 of stat)
            continue
        # utime, stime: fields 14 and 15 of stat; starttime: field 22
        ticks[f"{entry}:{fields[19]}"] = int(fields[11]) + int(fields[12])
    if not ticks:
        fail(f"no process in process group {pgid} (did the server exit?)")
    clock = os.sysconf("SC_CLK_TCK")
    return {"pgid": pgid, "clk_tck": clock, "seconds": sum(ticks.values()) / clock, "ticks": ticks}


def cpu_used(before: dict, after: dict) -> tuple[float, list[str]]:
    """CPU seconds a process group used between two `cpu_group` snapshots, and what to know.

    A process that started between them counts whole (all its CPU time is in the window); one
    that exited adds nothing (what it used between the first snapshot and its exit went with
    it), so the total is then a little low. The notes say which processes came or went.
    """
    ticks, notes = 0, []
    for key, now in after["ticks"].items():
        pid = key.split(":")[0]
        if key in before["ticks"]:
            ticks += now - before["ticks"][key]
        else:
            ticks += now
            notes.append(f"process {pid} started during the run (all its CPU counted)")
    for key in sorted(before["ticks"].keys() - after["ticks"].keys()):
        pid = key.split(":")[0]
        notes.append(f"process {pid} exited during the run (its CPU after the first read is lost)")
    return ticks / after["clk_tck"], notes


def rss(root: int) -> dict:
    """The process tree under `root`: workers are its leaves (minus multiprocessing helpers)."""
    tree = _tree(root)
    members = set(tree)
    has_children = {parent for pid, parent in _proc_table().items() if pid in members}
    processes = []
    for pid in tree:
        try:
            cmd = _cmdline(pid)
            processes.append(
                {
                    "pid": pid,
                    "rss_kb": _status_kb(pid, "VmRSS"),
                    "hwm_kb": _status_kb(pid, "VmHWM"),
                    "worker": pid not in has_children and "resource_tracker" not in cmd,
                    "cmd": cmd[:200],
                }
            )
        except OSError:
            continue
    workers = [p for p in processes if p["worker"]]
    return {
        "workers": len(workers),
        "worker_rss_kb": sum(p["rss_kb"] for p in workers),
        "worker_hwm_kb": sum(p["hwm_kb"] for p in workers),
        "total_rss_kb": sum(p["rss_kb"] for p in processes),
        "processes": processes,
    }


# ---------------------------------------------------------------------------------------------
# The report


def _wrk_result(path: Path) -> dict | None:
    if not path.exists():
        return None
    for line in path.read_text().splitlines():
        if line.startswith("BENCH_RESULT "):
            result = json.loads(line[len("BENCH_RESULT ") :])
            result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
            result["errors"] = sum(v for k, v in result.items() if k.startswith("errors_"))
            return result
    return None


def _load_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def _ms(us: float) -> str:
    return f"{us / 1000:.1f} ms"


def _rounds(results: Path, server: str, mode: str) -> list[dict]:
    """Every round of one server and mode, each with the 1-minute load average before it."""
    rounds = []
    for path in sorted(results.glob(f"wrk-{server}-{mode}-*.txt")):
        result = _wrk_result(path)
        if result is None:
            continue
        load = path.with_name(path.name.replace("wrk-", "load-", 1))
        result["load"] = float(load.read_text()) if load.exists() else None
        cpu = path.with_name(path.name.replace("wrk-", "cpu-", 1))
        if cpu.exists() and result["requests"]:
            before, after = map(float, cpu.read_text().split())
            result["server_cpu_us_per_request"] = (after - before) / result["requests"] * 1e6
        rounds.append(result)
    return rounds


def _median(rounds: list[dict]) -> dict | None:
    """The round with the median throughput (the lower middle one for an even count)."""
    if not rounds:
        return None
    ordered = sorted(rounds, key=lambda r: r["rps"])
    return ordered[(len(ordered) - 1) // 2]


def _cpu(run: dict) -> str:
    value = run.get("server_cpu_us_per_request")
    return "?" if value is None else f"{value:.0f} µs"


def _mib(kb: int) -> str:
    return f"{kb / 1024:.0f} MiB"


def report(results: Path) -> int:
    meta = _load_json(results / "meta.json") or {}
    all_rounds = {
        (server, mode): _rounds(results, server, mode) for server in SERVERS for mode in MODES
    }
    runs = {key: _median(rounds) for key, rounds in all_rounds.items()}
    memory = {server: _load_json(results / f"rss-{server}.json") for server in SERVERS}
    overhead = _load_json(results / "overhead.json")

    problems = []
    rows = []
    for mode, mode_label in MODES.items():
        for server, server_label in SERVERS.items():
            run, rounds, mem = runs[(server, mode)], all_rounds[(server, mode)], memory[server]
            if run is None:
                continue
            bad = sum(r["non_2xx_3xx"] for r in rounds)
            errors = sum(r["errors"] for r in rounds)
            if bad or errors:
                problems.append(f"{server} {mode}: {bad} non-2xx responses, {errors} socket errors")
            spread = min(r["rps"] for r in rounds), max(r["rps"] for r in rounds)
            loads = [r["load"] for r in rounds if r["load"] is not None]
            rows.append(
                [
                    mode_label,
                    server_label,
                    f"{run['rps']:,.0f}",
                    f"{spread[0]:,.0f}-{spread[1]:,.0f}",
                    _ms(run["p50_us"]),
                    _ms(run["p99_us"]),
                    _cpu(run),
                    _mib(mem["worker_rss_kb"]) if mem else "?",
                    str(bad + errors),
                    f"{min(loads):.1f}-{max(loads):.1f}" if loads else "?",
                ]
            )
        pair = runs[("chatmodels", mode)], runs[("mlflow", mode)]
        if all(pair):
            cpu = [run.get("server_cpu_us_per_request") for run in pair]
            rows.append(
                [
                    mode_label,
                    "**ratio chatmodels / MLflow**",
                    f"**{pair[0]['rps'] / pair[1]['rps']:.2f}x**",
                    "",
                    "",
                    "",
                    f"{cpu[1] / cpu[0]:.2f}x less" if all(cpu) else "",
                    "",
                    "",
                    "",
                ]
            )
    header = [
        "mode",
        "server",
        "req/s (median)",
        "req/s (range)",
        "p50",
        "p99",
        "server CPU per request",
        "worker RSS",
        "non-2xx + errors",
        "load avg before",
    ]
    lines = [
        f"# chatmodels vs mlflow models serve — {meta.get('date', '?')}",
        "",
        f"machine: {meta.get('cores', '?')} cores, {meta.get('cpu', '?')}; "
        f"wrk -t{meta.get('threads', '?')} -c{meta.get('connections', '?')} "
        f"-d{meta.get('duration', '?')}s after a {meta.get('warmup', '?')} s warm-up, "
        f"{meta.get('rounds', '?')} rounds each (median shown, p50/p99 of that round); "
        f"2 workers each; mlflow {meta.get('mlflow', '?')}; Python {meta.get('python', '?')}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    if overhead:
        floor = (overhead.get("breakdown_us") or {}).get(
            "GET /health via WSGI (middleware + DRF floor)"
        )
        lines += [
            "",
            f"server-side overhead (CPU time in-process, no network, best of 3 x "
            f"{overhead['n']} invocations): predict alone {overhead['predict_us']:.0f} µs; "
            f"a whole invocation through Django's WSGI handler {overhead['wsgi_us']:.0f} µs, "
            f"so {overhead['wsgi_overhead_us']:.0f} µs of overhead"
            + (f" (of which {floor:.0f} µs is the floor: GET /health)" if floor else "")
            + f"; {overhead['queries_per_invocation']:g} DB queries per invocation",
        ]
    ratio_close = None
    if all((runs[("chatmodels", "close")], runs[("mlflow", "close")])):
        ratio_close = runs[("chatmodels", "close")]["rps"] / runs[("mlflow", "close")]["rps"]
        verdict = "meets" if ratio_close >= TARGET_RATIO else "is BELOW"
        lines += [
            "",
            f"headline (Connection: close): {ratio_close:.2f}x, {verdict} the "
            f"{TARGET_RATIO}x target",
        ]
    for problem in problems:
        lines.append(f"PROBLEM: {problem}")
    text = "\n".join(lines) + "\n"
    print(text)
    (results / "summary.md").write_text(text)
    summary = {
        "meta": meta,
        "median_runs": {f"{s}-{m}": r for (s, m), r in runs.items()},
        "rounds": {f"{s}-{m}": r for (s, m), r in all_rounds.items()},
        "memory": {
            s: {k: v for k, v in (m or {}).items() if k != "processes"} for s, m in memory.items()
        },
        "overhead": overhead,
        "ratio_close": ratio_close,
        "problems": problems,
    }
    (results / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 1 if problems else 0


# ---------------------------------------------------------------------------------------------
# bench/serving.sh: run facts, and the report of its scenarios

SLOW_SERVERS = {
    "mlflow": "mlflow models serve (uvicorn), SleepModel",
    "chatmodels": "chatmodels (granian WSGI), SleepModel (time.sleep)",
    "chatmodels-async": "chatmodels (granian WSGI), AsyncSleepModel (asyncio.sleep)",
}
SLEEP_SECONDS = 0.5  # bench/models.py's SleepModel and bench/mlflow_sleep.py
SLOW_GOAL_SHARE, SLOW_GOAL_P99_MS, SLOW_GOAL_CONNECTIONS = 0.9, 1000, (256, 1024)


def _value(text: str) -> object:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def write_meta(out: Path, pairs: list[str]) -> None:
    """The run's facts (date, machine, load) plus KEY=VALUE pairs, as JSON in `out`."""
    cpu = "?"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    facts: dict[str, object] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cores": os.cpu_count(),
        "cpu": cpu,
        "python": sys.version.split()[0],
        "load_average_at_start": Path("/proc/loadavg").read_text().split()[0],
    }
    for pair in pairs:
        key, _, value = pair.partition("=")
        facts[key] = _value(value)
    out.write_text(json.dumps(facts, indent=2) + "\n")


def _fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f} ms"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def _slow_section(results: Path, meta: dict) -> tuple[list[str], dict]:
    runs: dict[str, dict[int, dict]] = {}
    for path in sorted(results.glob("slow-wrk-*.txt")):
        side, _, connections = path.stem[len("slow-wrk-") :].rpartition("-")
        result = _wrk_result(path)
        if result is None or side not in SLOW_SERVERS:
            continue
        cpu = path.with_name(path.name.replace("-wrk-", "-cpu-", 1))
        if cpu.exists() and result["requests"]:
            before, after = map(float, cpu.read_text().split())
            result["server_cpu_us_per_request"] = (after - before) / result["requests"] * 1e6
        runs.setdefault(side, {})[int(connections)] = result
    if not runs:
        return [], {}
    counts = sorted({c for side in runs.values() for c in side})
    rows, summary = [], {}
    for connections in counts:
        ideal = connections / SLEEP_SECONDS
        for side, label in SLOW_SERVERS.items():
            run = runs.get(side, {}).get(connections)
            if run is None:
                continue
            share = run["rps"] / ideal
            goal = "-"
            if connections in SLOW_GOAL_CONNECTIONS:
                met = (
                    share >= SLOW_GOAL_SHARE
                    and run["p99_us"] <= SLOW_GOAL_P99_MS * 1000
                    and not run["errors"]
                    and not run["non_2xx_3xx"]
                )
                goal = "meets" if met else "MISSES"
            cpu = run.get("server_cpu_us_per_request")
            rows.append(
                [
                    f"{connections:,}",
                    label,
                    f"{run['rps']:,.1f}",
                    f"{ideal:,.0f}",
                    f"{share:.0%}",
                    _fmt_ms(run["p50_us"] / 1000),
                    _fmt_ms(run["p99_us"] / 1000),
                    f"{run['errors']} ({run['errors_timeout']} timeouts)",
                    str(run["non_2xx_3xx"]),
                    "?" if cpu is None else f"{cpu:,.0f} µs",
                    goal,
                ]
            )
            summary[f"{side}-{connections}"] = {**run, "ideal_rps": ideal, "share_of_ideal": share}
        pair = runs.get("chatmodels", {}).get(connections), runs.get("mlflow", {}).get(connections)
        if all(pair):
            ratio = pair[0]["rps"] / pair[1]["rps"]
            rows.append([f"{connections:,}", "**ratio chatmodels / MLflow**", f"**{ratio:.2f}x**"])
            rows[-1] += [""] * 8
    lines = [
        "",
        f"## Slow model: {SLEEP_SECONDS * 1000:.0f} ms per answer",
        "",
        f"wrk -t{meta.get('wrk_threads', '?')} -d{meta.get('slow_duration', '?')}s "
        f"--timeout 10s --latency, keep-alive, after a {meta.get('slow_warmup', '?')} s warm-up at "
        "the same connection count; the servers in turn at each count. Ideal = connections / "
        f"{SLEEP_SECONDS:g} s. Goal: at least {SLOW_GOAL_SHARE:.0%} of the ideal at "
        + " and ".join(f"{c:,}" for c in SLOW_GOAL_CONNECTIONS)
        + f" connections, p99 at most {SLOW_GOAL_P99_MS / 1000:g} s, no errors. wrk leaves the "
        "requests that timed out out of its latencies: they are in the errors column.",
        "",
        *_table(
            [
                "connections",
                "server",
                "req/s",
                "ideal req/s",
                "% of ideal",
                "p50",
                "p99",
                "socket errors",
                "non-2xx",
                "server CPU / request",
                "goal",
            ],
            rows,
        ),
    ]
    for side in SLOW_SERVERS:
        mem = _load_json(results / f"slow-rss-{side}.json")
        if mem:
            lines.append(
                f"\n{SLOW_SERVERS[side]}: worker RSS after the load {_mib(mem['worker_rss_kb'])} "
                f"({mem['workers']} workers; peak {_mib(mem['worker_hwm_kb'])})"
            )
    return lines, summary


def _slowloris_section(result: dict) -> list[str]:
    slow = result["slow_connections"]
    opened, server = (
        slow["open_during_measurement"],
        slow["server_side_established_during_measurement"],
    )
    rows = []
    worst, errors = 0.0, 0
    for phase, label in (("baseline", "alone"), ("with_slow_clients", "with slow clients")):
        for name, row in result[phase].items():
            rows.append(
                [
                    label,
                    f"`{name}`",
                    f"{row['n']:,}",
                    _fmt_ms(row["p50_ms"]),
                    _fmt_ms(row["p99_ms"]),
                    _fmt_ms(row["max_ms"]),
                    str(row["errors"]),
                ]
            )
            if phase == "with_slow_clients":
                worst, errors = max(worst, row["p99_ms"] or 0), errors + row["errors"]
    met = worst <= 50 and not errors and slow["reached_target"]
    return [
        "",
        f"## Slow clients: {slow['target']:,} connections sending their headers one byte every "
        f"{slow['interval_s']:g} s",
        "",
        f"A normal client sends its requests one after the other, each on a new connection, for "
        f"{result['phase_s']:g} s alone, then for {result['phase_s']:g} s with the slow "
        f"connections open (`bench/load.py slowloris`). Latencies count failed requests too. "
        f"Goal: p99 at most 50 ms, no errors, with all of them open.",
        "",
        f"Slow connections open during the measurement (min/mean/max): {opened['min']}/"
        f"{opened['mean']:g}/{opened['max']} on the client side, {server['min']}/"
        f"{server['mean']:g}/{server['max']} ESTABLISHED on the server's port; the server closed "
        f"{slow['closed_by_server_during_measurement']} of them during the measurement (its "
        f"header timeout; each was reopened at once), answers {slow['server_answers']}.",
        "",
        *_table(["phase", "request", "requests", "p50", "p99", "max", "errors"], rows),
        "",
        f"goal (p99 <= 50 ms, no errors, all open): {'meets' if met else 'MISSES'} "
        f"(worst p99 {worst:.1f} ms, {errors} errors)",
    ]


def _streams_section(results: list[dict]) -> list[str]:
    rows = []
    first = results[0]
    for result in results:
        delay, ttfb, lag = (
            result["chunk_delay"],
            result["first_chunk_after_request"],
            result["client_loop_lag"],
        )
        mem = result["memory"]
        goal_mib = 250e6 / 2**20
        complete = (
            result["stream_errors"] == 0
            and result["streams_completed"] == result["streams_started"]
        )
        met = (
            delay["p99_ms"] is not None
            and delay["p99_ms"] <= 20
            and mem["max_worker_peak_rss_mib"] is not None
            and mem["max_worker_peak_rss_mib"] <= goal_mib
            and complete
        )
        rows.append(
            [
                f"`{result['model']}`",
                f"{result['streams_completed']:,} / {result['streams_started']:,}",
                f"{result['chunks_received']:,} / {result['chunks_expected']:,}",
                _fmt_ms(delay["p50_ms"]),
                _fmt_ms(delay["p99_ms"]),
                _fmt_ms(delay["max_ms"]),
                f"{_fmt_ms(ttfb['p50_ms'])} / {_fmt_ms(ttfb['p99_ms'])}",
                ", ".join(f"{v:.0f} MiB" for v in mem["worker_peak_rss_mib"].values()) or "?",
                f"{_fmt_ms(lag['p99_ms'])}, CPU {result['client_cpu_share']:.0%}",
                f"{result['stream_errors']} {result['error_kinds'] or ''}".strip(),
                "meets" if met else "MISSES",
            ]
        )
    return [
        "",
        f"## Streams: {first['concurrency']:,} concurrent streams of {first['chunks_per_stream']} "
        "chunks 50 ms apart",
        "",
        f"Each of {first['concurrency']:,} client connections runs streams back to back "
        f"(`bench/load.py streams`, keep-alive); {first['duration_s']:g} s measured after a "
        f"{first['warmup_s']:g} s warm-up. Delay = the chunk's arrival at the client minus the "
        "`time.time()` the model stamped in it when it yielded it (same machine, same clock). "
        "Worker memory: the peak VmRSS of each granian worker, sampled every "
        f"{first['memory']['every_s']:g} s during the run. The client's own event-loop lag and "
        "CPU are shown: a saturated client inflates the delays it measures. Goal: chunk delay "
        "p99 at most 20 ms, at most 250 MB (238 MiB) per worker, every stream complete.",
        "",
        *_table(
            [
                "model",
                "streams completed / started",
                "chunks received / expected",
                "delay p50",
                "delay p99",
                "delay max",
                "first chunk p50 / p99",
                "worker peak VmRSS",
                "client loop lag p99, client CPU",
                "errors",
                "goal",
            ],
            rows,
        ),
    ]


def serving_report(results: Path) -> int:
    """bench/serving.sh's summary: prints it and writes summary.md and summary.json."""
    meta = _load_json(results / "meta.json") or {}
    lines = [
        f"# chatmodels serving benchmarks — {meta.get('date', '?')}",
        "",
        f"machine: {meta.get('cores', '?')} cores, {meta.get('cpu', '?')}; load average "
        f"{meta.get('load_average_at_start', '?')} at the start; Python {meta.get('python', '?')}, "
        f"granian {meta.get('granian', '?')}, mlflow {meta.get('mlflow', '?')}; "
        f"{meta.get('workers', '?')} workers per server, all on 127.0.0.1",
    ]
    slow_lines, slow = _slow_section(results, meta)
    lines += slow_lines
    slowloris = _load_json(results / "slowloris.json")
    if slowloris:
        lines += _slowloris_section(slowloris)
    streams = [
        result
        for name in ("sync", "async")
        if (result := _load_json(results / f"streams-{name}.json"))
    ]
    if streams:
        lines += _streams_section(streams)
    text = "\n".join(lines) + "\n"
    print(text)
    (results / "summary.md").write_text(text)
    summary = {"meta": meta, "slow": slow, "slowloris": slowloris, "streams": streams}
    (results / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0


# ---------------------------------------------------------------------------------------------
# bench/usage_cost.sh: what the per-request features cost, ON against OFF

COST_BAR = 0.05  # issue 10: a throughput cost of at most 5%
COST_SIDES = ("off", "on")


def _cost_run(results: Path, name: str, round_: int) -> dict | None:
    """One measured run: req/s, and the server's CPU µs per request from its two snapshots."""
    result = _wrk_result(results / f"wrk-{name}-{round_}.txt")
    if result is None:
        return None
    run = {
        "rps": result["rps"],
        "requests": result["requests"],
        "duration_s": result["duration_us"] / 1e6,
        "errors": result["errors"],
        "non_2xx_3xx": result["non_2xx_3xx"],
        "cpu_seconds": None,
        "cpu_us_per_request": None,
        "cpu_notes": [],
    }
    snapshots = results / f"cpu-{name}-{round_}.jsonl"
    lines = snapshots.read_text().splitlines() if snapshots.exists() else []
    if len(lines) == 2 and result["requests"]:
        seconds, notes = cpu_used(json.loads(lines[0]), json.loads(lines[1]))
        run.update(
            cpu_seconds=seconds,
            cpu_us_per_request=seconds / result["requests"] * 1e6,
            cpu_notes=notes,
        )
    return run


def _spread(values: list[float]) -> dict | None:
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _fmt_spread(spread: dict | None, fmt: str) -> str:
    if spread is None:
        return "?"
    return f"{spread['median']:{fmt}} [{spread['min']:{fmt}}-{spread['max']:{fmt}}]"


def _ratio(on: dict | None, off: dict | None) -> float | None:
    return on["median"] / off["median"] if on and off else None


def cost_report(results: Path, on_env: str, off_env: str) -> int:
    """bench/usage_cost.sh's cost summary: prints it, writes summary-cost.txt and .json.

    `order.txt` in `results` names the rounds and the order of each ("1 off on"); each run has
    its wrk output (wrk-NAME-ROUND.txt) and the server's CPU snapshots before and after it
    (cpu-NAME-ROUND.jsonl, two `cpu_group` lines).
    """
    rounds, problems, notes = [], [], []
    for line in (results / "order.txt").read_text().splitlines():
        number, *order = line.split()
        round_ = {"round": int(number), "order": order}
        for name in COST_SIDES:
            run = round_[name] = _cost_run(results, name, int(number))
            if run is None:
                problems.append(f"{name} round {number}: no wrk result")
                continue
            if run["errors"] or run["non_2xx_3xx"]:
                problems.append(
                    f"{name} round {number}: {run['non_2xx_3xx']} non-2xx responses, "
                    f"{run['errors']} socket errors"
                )
            if run["cpu_us_per_request"] is None:
                notes.append(f"{name} round {number}: no server CPU reading")
            notes += [f"{name} round {number}: {note}" for note in run["cpu_notes"]]
        rounds.append(round_)
    complete = [r for r in rounds if r["on"] and r["off"]]
    if not complete:
        fail(f"no round with both an ON and an OFF run in {results}")

    rps = {name: [r[name]["rps"] for r in complete] for name in COST_SIDES}
    cpu = {
        name: [v for r in complete if (v := r[name]["cpu_us_per_request"]) is not None]
        for name in COST_SIDES
    }
    throughput = {name: _spread(rps[name]) for name in COST_SIDES}
    cpu_spread = {name: _spread(cpu[name]) for name in COST_SIDES}
    ratio = _ratio(throughput["on"], throughput["off"])
    cpu_ratio = _ratio(cpu_spread["on"], cpu_spread["off"])
    # Each round's ON against the OFF run next to it: a slow drift of the machine's speed
    # weighs on both runs of a pair alike, and the median leaves out a round that was disturbed.
    for r in complete:
        r["throughput_ratio"] = r["on"]["rps"] / r["off"]["rps"]
        on_cpu, off_cpu = r["on"]["cpu_us_per_request"], r["off"]["cpu_us_per_request"]
        r["cpu_ratio"] = on_cpu / off_cpu if on_cpu and off_cpu else None
    paired = {
        "throughput": _spread([r["throughput_ratio"] for r in complete]),
        "cpu_per_request": _spread([r["cpu_ratio"] for r in complete if r["cpu_ratio"]]),
    }

    duration = statistics.median(r[name]["duration_s"] for r in complete for name in COST_SIDES)
    lines = [
        "",
        f"usage cost: {len(complete)} rounds of an OFF and an ON run (wrk {duration:.0f} s each), "
        f"in the order {' / '.join(','.join(r['order']) for r in complete)}",
        "median [range] over the rounds; server CPU = user + system time of all its processes",
    ]
    for name, env in (("off", off_env), ("on", on_env)):
        lines.append(
            f"  {name.upper():<3} ({env}): {_fmt_spread(throughput[name], ',.0f')} req/s; "
            f"server CPU {_fmt_spread(cpu_spread[name], ',.0f')} µs/request"
        )
    lines.append(
        f"  ON / OFF = {ratio:.3f}: a throughput cost of {100 * (1 - ratio):.1f}% "
        f"(bar: at most {100 * COST_BAR:.0f}%)"
    )
    if cpu_ratio is not None:
        lines.append(
            f"  server CPU per request ON / OFF = {cpu_ratio:.3f}: "
            f"a CPU cost of {100 * (cpu_ratio - 1):.1f}% per request"
        )
    lines.append("  paired: the median of each round's ON / OFF (against the OFF run next to it)")
    if paired["throughput"]:
        tput = paired["throughput"]
        lines.append(
            f"    throughput {_fmt_spread(tput, '.3f')}: "
            f"a cost of {100 * (1 - tput['median']):.1f}%"
        )
    if paired["cpu_per_request"]:
        per = paired["cpu_per_request"]
        lines.append(
            f"    server CPU per request {_fmt_spread(per, '.3f')}: "
            f"a cost of {100 * (per['median'] - 1):.1f}%"
        )
    lines += [f"  note: {note}" for note in notes]
    lines += [f"PROBLEM: {problem}" for problem in problems]
    text = "\n".join(lines) + "\n"
    print(text)
    (results / "summary-cost.txt").write_text(text)
    summary = {
        "on_env": on_env,
        "off_env": off_env,
        "on": rps["on"],
        "off": rps["off"],
        "ratio": ratio,
        "cpu_us_per_request": cpu,
        "cpu_ratio": cpu_ratio,
        "throughput": throughput,
        "cpu": cpu_spread,
        "paired": paired,
        "rounds": rounds,
        "notes": notes,
        "problems": problems,
    }
    (results / "summary-cost.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 1 if problems else 0


def main(argv: list[str]) -> int:
    if not argv:
        fail(__doc__)
    command, args = argv[0], argv[1:]
    if command == "port":
        print(free_port())
    elif command == "wait":
        wait(args[0], float(args[1]), int(args[2]))
    elif command == "verify":
        verify(args[0], args[1] if len(args) > 1 else "")
    elif command == "send":
        send(args[0], args[1], int(args[2]))
    elif command == "cpu":
        print(f"{cpu_seconds(int(args[0])):.2f}")
    elif command == "cpu-group":
        print(json.dumps(cpu_group(int(args[0]))))
    elif command == "cost-report":
        return cost_report(Path(args[0]), args[1], args[2])
    elif command == "rss":
        print(json.dumps(rss(int(args[0])), indent=2))
    elif command == "report":
        return report(Path(args[0]))
    elif command == "settle":
        settle(args[0], args[1], float(args[2]), float(args[3]))
    elif command == "meta":
        write_meta(Path(args[0]), args[1:])
    elif command == "serving-report":
        return serving_report(Path(args[0]))
    else:
        fail(f"unknown command {command!r}\n{__doc__}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
