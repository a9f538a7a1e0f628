"""Small stdlib-only helpers for bench/run.sh: ports, readiness, echo checks, memory, the report.

    python bench/benchtool.py port
    python bench/benchtool.py wait URL SECONDS PID
    python bench/benchtool.py verify URL [KEY]
    python bench/benchtool.py rss PID
    python bench/benchtool.py cpu PID
    python bench/benchtool.py report RESULTS_DIR

Runs with any Python 3.10+ (no third-party imports), so either venv can run it.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

BODY = {"messages": [{"role": "user", "content": "Hello!"}]}
SERVERS = {"chatmodels": "chatmodels (gunicorn gthread)", "mlflow": "mlflow models serve (uvicorn)"}
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
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: the fields start after the last ")".
        fields = stat[stat.rindex(")") + 2 :].split()
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
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")


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
        verdict = "meets" if ratio_close >= 3 else "is BELOW"
        lines += ["", f"headline (Connection: close): {ratio_close:.2f}x, {verdict} the 3x target"]
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
    elif command == "cpu":
        print(f"{cpu_seconds(int(args[0])):.2f}")
    elif command == "rss":
        print(json.dumps(rss(int(args[0])), indent=2))
    elif command == "report":
        return report(Path(args[0]))
    else:
        fail(f"unknown command {command!r}\n{__doc__}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
