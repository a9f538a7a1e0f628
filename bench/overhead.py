"""Server-side overhead of one invocation, measured inside Django with no network in between.

    DJANGO_SETTINGS_MODULE=project.settings .venv/bin/python bench/overhead.py \
        --model echo --key KEY [--n 2000] [--results DIR] [--profile OUT.txt]

Times N calls of `POST /api/models/<model>/invocations` (with the key) two ways, in CPU time
(best of three batches each): the model's own `predict` called directly, and the request through
Django's WSGI handler (what granian calls). The difference is the server's overhead per
invocation; each step of an invocation is also timed alone, and GET /health as the floor.
Counts the database queries of one invocation (django.test.utils.CaptureQueriesContext).
With --profile, runs the WSGI loop under cProfile and writes where the time goes, by function
and by package (Django middleware, DRF, chatmodels, JSON, logging, the database, ...).

Run by bench/run.sh with the benchmark's throwaway install (a temp SQLite database and package
directory, the echo model registered, an API key made); with --results DIR, the numbers are
appended to DIR/runs.jsonl (bench/tool.py report).
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.util
import io
import json
import os
import pstats
import sys
import time
import warnings
from pathlib import Path

from tool import append_record

ROOT = Path(__file__).resolve().parent.parent
BODY = json.dumps({"messages": [{"role": "user", "content": "Hello!"}]}).encode()
HEALTH = "GET /health via WSGI (middleware + DRF floor)"


def setup_django() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    # WhiteNoise warns that collectstatic never ran for this throwaway install: not our concern.
    warnings.filterwarnings("ignore", message="No directory at", category=UserWarning)
    import django

    django.setup()


def best_per_call_us(func, n: int, repeats: int = 3) -> float:
    """The best of `repeats` batches of `n` calls, in CPU microseconds per call.

    CPU time of this process, not wall time: on a machine shared with other work, the wall
    clock counts time spent waiting for a core, and CPU time does not.
    """
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time_ns()
        for _ in range(n):
            func()
        best = min(best, (time.process_time_ns() - started) / n / 1000)
    return best


def check_echo(status: int, body: bytes) -> None:
    if status != 200:
        sys.exit(f"overhead: the invocation answered {status}: {body[:500]!r}")
    content = json.loads(body)["choices"][0]["message"]["content"]
    if content != "Hello!":
        sys.exit(f"overhead: the invocation did not echo 'Hello!': {body[:500]!r}")


def direct_predict(model_name: str):
    """A zero-argument callable running the served version's `predict`, as the runtime does."""
    from chatmodels.types import ChatMessage, ChatParams

    messages, params = [ChatMessage(role="user", content="Hello!")], ChatParams()
    try:
        from chatmodels import selectors
        from chatmodels.serving import model_cache

        version = selectors.resolve_version(name=model_name)
        loaded = model_cache.get_loaded_model(version)
        model, context = loaded.model, loaded.context
        source = f"{model_name} version {version.version}, loaded by chatmodels.serving.runtime"
    except Exception as error:  # the runtime's API moved: the same code from examples/
        spec = importlib.util.spec_from_file_location("bench_echo", ROOT / "examples" / "echo.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        model, context = module.EchoModel(), None
        source = f"examples/echo.py:EchoModel (runtime lookup failed: {error!r})"

    def call():
        return model.predict(context, messages, params)

    if call().choices[0].message.content != "Hello!":
        sys.exit("overhead: predict did not echo 'Hello!'")
    return call, source


def wsgi_invoker(path: str, key: str | None = None, *, method: str = "POST", body: bytes = BODY):
    """A zero-argument callable sending a request through Django's WSGI handler.

    It returns the status code and the response body.
    """
    from django.core.wsgi import get_wsgi_application

    handler = get_wsgi_application()
    base = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    if key is not None:
        base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    captured = {}

    def start_response(status, headers, exc_info=None):
        captured["status"] = int(status.split()[0])

    def call():
        environ = dict(base)
        environ["wsgi.input"] = io.BytesIO(body)
        result = handler(environ, start_response)
        try:
            response_body = b"".join(result)
        finally:
            result.close()
        return captured["status"], response_body

    return call


def breakdown(model_name: str, key: str, n: int) -> dict[str, float]:
    """Microseconds per call of each step of an invocation, timed alone (no profiler)."""
    parts: dict[str, float] = {}
    body = json.loads(BODY)

    def timed(label: str, func) -> None:
        try:
            func()
            parts[label] = best_per_call_us(func, n)
        except Exception as error:  # an internal API moved: say so, measure the rest
            print(f"breakdown: {label}: {error!r}", file=sys.stderr)

    timed(HEALTH, wsgi_invoker("/health", method="GET", body=b""))
    timed("json.loads(request body)", lambda: json.loads(BODY))
    try:
        from chatmodels import selectors
        from chatmodels.serving import eventloop, runtime
        from chatmodels.types import ChatRequest

        timed("selectors.get_api_key (1 query)", lambda: selectors.get_api_key(key))
        timed(
            "selectors.resolve_version (1 query)",
            lambda: selectors.resolve_version(name=model_name),
        )
        timed("ChatRequest.from_dict(body)", lambda: ChatRequest.from_dict(body))
        version = selectors.resolve_version(name=model_name)
        chat_request = ChatRequest.from_dict(body)
        timed(
            "runtime.invoke (predict + output check + shape)",
            lambda: eventloop.run(runtime.invoke(version, chat_request, served_name=model_name)),
        )
        completion = eventloop.run(runtime.invoke(version, chat_request, served_name=model_name))
        timed("json.dumps(completion)", lambda: json.dumps(completion))
    except Exception as error:
        print(f"breakdown: {error!r}", file=sys.stderr)
    return parts


def count_queries(call) -> tuple[float, list[str]]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    runs = 10
    with CaptureQueriesContext(connection) as captured:
        for _ in range(runs):
            call()
    queries = [q["sql"] for q in captured.captured_queries]
    return len(queries) / runs, queries[: len(queries) // runs]


AREAS = [  # (label, substring of the code's file path), first match wins
    ("django middleware", "/django/middleware/"),
    ("django contrib middleware", "/django/contrib/"),
    ("whitenoise", "/whitenoise/"),
    ("django handlers/WSGI", "/django/core/handlers/"),
    ("django urls", "/django/urls/"),
    ("django db / ORM", "/django/db/"),
    ("django http", "/django/http/"),
    ("django other", "/django/"),
    ("DRF", "/rest_framework/"),
    ("chatmodels", "/chatmodels/"),
    ("model code", "/examples/"),
    ("json", "/json/"),
    ("logging", "/logging/"),
    ("sqlite3", "sqlite3"),
]


def profile(call, n: int, out: Path) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(n):
        call()
    profiler.disable()
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream)
    total = stats.total_tt
    areas: dict[str, float] = {}
    for (filename, _line, name), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():
        where = filename if filename != "~" else name  # built-ins: "<built-in method ...>"
        label = next((lab for lab, part in AREAS if part in where), None)
        if label is None:
            label = "builtins/C" if filename == "~" else "other Python"
        areas[label] = areas.get(label, 0.0) + tottime
    stream.write(f"cProfile of {n} invocations through the WSGI handler ")
    stream.write(f"(profiled time {total / n * 1e6:.0f} µs per invocation)\n\n")
    stream.write("self time by area (µs per invocation, share):\n")
    for label, seconds in sorted(areas.items(), key=lambda item: -item[1]):
        stream.write(f"  {label:28s} {seconds / n * 1e6:8.1f}  {seconds / total:6.1%}\n")
    stream.write("\n")
    stats.sort_stats("cumulative").print_stats(45)
    stats.sort_stats("tottime").print_stats(35)
    out.write_text(stream.getvalue())
    print(stream.getvalue()[:6000])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="echo")
    parser.add_argument("--key", default=os.environ.get("BENCH_API_KEY", ""))
    parser.add_argument("--n", type=int, default=2000, help="invocations per batch")
    parser.add_argument("--results", help="append the numbers to RESULTS/runs.jsonl")
    parser.add_argument("--profile", type=Path, help="also profile, writing the report here")
    args = parser.parse_args()
    if not args.key:
        parser.error("an API key is needed (--key or BENCH_API_KEY)")

    setup_django()
    predict, source = direct_predict(args.model)
    wsgi = wsgi_invoker(f"/api/models/{args.model}/invocations", args.key)
    for _ in range(50):  # warm up: load the model, open the connection, check the echo
        status, body = wsgi()
    check_echo(status, body)

    predict_us = best_per_call_us(predict, args.n * 5)
    wsgi_us = best_per_call_us(wsgi, args.n)
    queries, sql = count_queries(wsgi)
    parts = breakdown(args.model, args.key, args.n)
    print(f"model: {source}")
    print(f"predict alone:                {predict_us:8.1f} µs per call")
    overhead = wsgi_us - predict_us
    print(f"through the WSGI handler:     {wsgi_us:8.1f} µs (overhead {overhead:.1f} µs)")
    print(f"database queries per invocation: {queries:g}")
    for statement in sql:
        print(f"  {statement[:300]}")
    print("steps timed alone (µs per call):")
    for label, value in parts.items():
        print(f"  {label:50s} {value:8.1f}")
    if args.results:
        measures = {
            "predict µs": round(predict_us, 1),
            "WSGI µs": round(wsgi_us, 1),
            "overhead µs": round(overhead, 1),
            "GET /health µs": round(parts.get(HEALTH, 0), 1),
            "queries": queries,
        }
        append_record(args.results, "overhead in process", {"model": args.model}, measures)
    if args.profile:
        profile(wsgi, args.n, args.profile)


if __name__ == "__main__":
    main()
