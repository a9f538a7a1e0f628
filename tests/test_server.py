"""The production server (`scripts/server`, granian) end to end, through real sockets:
async models, concurrency, saturation, time limits, disconnects, chunked bodies, signals.
"""

from __future__ import annotations

import http.client as httpclient
import json
import os
import signal
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.live import Deployment, chat_body, deployment, http, start_process, wait_until_answers

pytestmark = pytest.mark.slow

MODELS = "tests/server_models.py"
COMPLETIONS = "/v1/chat/completions"


@pytest.fixture(scope="module")
def installation(tmp_path_factory):
    """One deployment with every test model registered, and an API key."""
    directory = tmp_path_factory.mktemp("server")
    records = directory / "records"
    with deployment(directory) as installation:
        for name, target, config in (
            ("sleep", "Sleep", {"seconds": 1.0}),
            ("sleepy-gpu", "Sleep", {"seconds": 2.0}),
            ("async-echo", "AsyncEcho", {"prefix": "async:"}),
            ("sync-ticker", "SyncTicker", {"record_dir": str(records / "sync")}),
            ("async-ticker", "AsyncTicker", {"record_dir": str(records / "async")}),
            ("slow-start", "SlowStart", {"seconds": 1.0}),
            ("stuck", "Stuck", {}),
            ("async-stuck", "AsyncStuck", {"record_dir": str(records / "async-stuck")}),
        ):
            (records / name).mkdir(parents=True, exist_ok=True)
            for sub in ("sync", "async", "async-stuck"):
                (records / sub).mkdir(parents=True, exist_ok=True)
            config_file = directory / f"{name}.json"
            config_file.write_text(json.dumps(config))
            extra = ["--max-concurrency", "1"] if name == "sleepy-gpu" else []
            installation.manage(
                "register_model",
                name,
                f"{MODELS}:{target}",
                "--model-config",
                str(config_file),
                *extra,
            )
        installation.key = installation.create_api_key("server-tests")
        installation.records = records
        yield installation


@pytest.fixture(scope="module")
def server(installation):
    """One worker with a small capacity (4 at once), short queue, model timeout and keep-alive."""
    return installation.start_server(
        "small",
        workers=1,
        max_in_flight=4,
        CHATMODELS_QUEUE_TIMEOUT="0.5",
        CHATMODELS_MODEL_TIMEOUT="3",
        CHATMODELS_STREAM_KEEPALIVE="0.3",
    )


def chat(server: str, key: str, model: str, text: str, **extra) -> object:
    return http(
        "POST",
        server + COMPLETIONS,
        body={**chat_body(text), "model": model, **extra},
        key=key,
        timeout=60,
    )


def open_stream(server: str, key: str, model: str, text: str = "go") -> httpclient.HTTPResponse:
    """A streamed chat completion, headers read, body not yet."""
    parts = urlsplit(server)
    connection = httpclient.HTTPConnection(parts.hostname, parts.port, timeout=30)
    body = json.dumps({**chat_body(text), "model": model, "stream": True})
    connection.request(
        "POST",
        COMPLETIONS,
        body=body,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    response = connection.getresponse()
    assert response.status == 200, response.read()
    return response


def events(response: httpclient.HTTPResponse) -> list[str]:
    """Every SSE line of a stream (data events and comments), to its end."""
    lines = []
    while line := response.readline():
        line = line.decode().strip()
        if line:
            lines.append(line)
    return lines


def records(installation, kind: str, event: str) -> int:
    return sum(1 for name in os.listdir(installation.records / kind) if name.startswith(event))


def wait_for(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


# --- async models ------------------------------------------------------------------------------


def test_an_async_model_answers_and_streams(installation, server):
    answer = chat(server, installation.key, "async-echo", "hello there")
    assert answer.content() == "async: hello there"

    lines = events(open_stream(server, installation.key, "async-echo", "one two three"))
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[len("data: ") :]) for line in lines[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == "async: one two three"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


# --- concurrency and saturation ----------------------------------------------------------------


def test_200_concurrent_requests_to_a_sleeping_model_all_succeed(installation):
    wide = installation.start_server("wide", workers=1, max_in_flight=256)
    with ThreadPoolExecutor(max_workers=200) as pool:
        answers = list(
            pool.map(lambda i: chat(wide, installation.key, "sleep", f"#{i}"), range(200))
        )

    assert [a.status for a in answers] == [200] * 200
    # The model saw them overlap: one worker held (nearly) all 200 at once, not a handful.
    most = max(int(a.content().split("at most ")[1].split()[0]) for a in answers)
    assert most >= 150, most


def test_past_capacity_a_request_gets_503_with_retry_after(installation, server):
    # 4 slots; 12 requests for a model that takes 1 s; the queue timeout is 0.5 s.
    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(
            pool.map(lambda i: chat(server, installation.key, "sleep", f"#{i}"), range(12))
        )

    statuses = sorted(a.status for a in answers)
    assert statuses == [200] * 4 + [503] * 8
    busy = next(a for a in answers if a.status == 503)
    assert busy.body["error"]["code"] == "server_busy"
    assert busy.body["error"]["type"] == "server_error"
    assert "at capacity" in busy.body["error"]["message"]
    assert int(busy.headers["Retry-After"]) >= 1
    # Capacity comes back: the next request is served.
    assert chat(server, installation.key, "sleep", "again").status == 200


def test_a_model_with_max_concurrency_runs_that_many_and_refuses_the_rest(installation, server):
    with ThreadPoolExecutor(max_workers=3) as pool:
        answers = list(
            pool.map(lambda i: chat(server, installation.key, "sleepy-gpu", f"#{i}"), range(3))
        )

    assert sorted(a.status for a in answers) == [200, 503, 503]
    busy = next(a for a in answers if a.status == 503)
    assert "sleepy-gpu is at its max_concurrency of 1" in busy.body["error"]["message"]
    assert busy.headers["Retry-After"]


# --- time limits ----------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["stuck", "async-stuck"])
def test_a_stuck_model_gets_504_and_the_server_goes_on(installation, server, model):
    answer = chat(server, installation.key, model, "take forever")

    assert answer.status == 504
    assert answer.body["error"]["code"] == "model_timeout"
    assert "did not answer within 3 s" in answer.body["error"]["message"]
    assert chat(server, installation.key, "async-echo", "still here").status == 200


def test_a_stuck_async_model_is_cancelled(installation, server):
    before = records(installation, "async-stuck", "cancelled")
    assert chat(server, installation.key, "async-stuck", "take forever").status == 504
    assert wait_for(lambda: records(installation, "async-stuck", "cancelled") == before + 1)


def test_a_silent_stream_sends_keep_alive_comments(installation, server):
    lines = events(open_stream(server, installation.key, "slow-start"))

    assert lines.count(": keep-alive") >= 2  # 1 s of silence, every 0.3 s
    assert lines[-1] == "data: [DONE]"
    data = [json.loads(line[6:]) for line in lines if line.startswith("data: {")]
    assert data[0]["choices"][0]["delta"]["content"] == "finally"


# --- disconnects -------------------------------------------------------------------------------


@pytest.mark.parametrize("model, kind", [("sync-ticker", "sync"), ("async-ticker", "async")])
def test_a_client_that_goes_away_stops_the_model(installation, server, model, kind):
    before = records(installation, kind, "finally")
    response = open_stream(server, installation.key, model)
    assert response.readline().startswith(b"data: ")
    response.close()  # the client goes away after one chunk of a 10 s stream

    assert wait_for(lambda: records(installation, kind, "finally") == before + 1, seconds=3)
    if kind == "async":
        assert records(installation, "async", "cancelled") >= 1


def _worker_pid(server_process) -> int:
    main = server_process.popen.pid
    children = Path(f"/proc/{main}/task/{main}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def _threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def test_after_100_aborted_streams_the_worker_has_no_more_threads(installation, server):
    (process,) = [p for p in installation.processes if p.name == "server on small"]
    worker = _worker_pid(process)

    def abort_streams(count: int) -> None:
        for model in ("sync-ticker", "async-ticker") * (count // 2):
            response = open_stream(server, installation.key, model)
            response.readline()
            response.close()

    abort_streams(10)  # warm: the pool's threads and the event loop exist
    time.sleep(0.5)
    started = _threads(worker)
    finished_before = records(installation, "sync", "finally") + records(
        installation, "async", "finally"
    )

    abort_streams(100)

    def all_stopped() -> bool:
        done = records(installation, "sync", "finally") + records(installation, "async", "finally")
        return done == finished_before + 100

    assert wait_for(all_stopped, seconds=10)
    assert wait_for(lambda: _threads(worker) <= started, seconds=10), (_threads(worker), started)


# --- request bodies ----------------------------------------------------------------------------


def test_a_chunked_request_body_is_read(installation, server):
    parts = urlsplit(server)
    connection = httpclient.HTTPConnection(parts.hostname, parts.port, timeout=30)
    body = json.dumps({**chat_body("sent in pieces"), "model": "async-echo"}).encode()
    pieces = [body[i : i + 7] for i in range(0, len(body), 7)]
    connection.request(
        "POST",
        COMPLETIONS,
        body=iter(pieces),
        headers={"Authorization": f"Bearer {installation.key}", "Content-Type": "application/json"},
        encode_chunked=True,
    )
    response = connection.getresponse()
    answer = json.loads(response.read())

    assert response.status == 200, answer
    assert answer["choices"][0]["message"]["content"] == "async: sent in pieces"


def test_a_chunked_body_over_the_limit_gets_413(installation, server):
    parts = urlsplit(server)
    connection = httpclient.HTTPConnection(parts.hostname, parts.port, timeout=30)
    text = "x" * (1024 * 1024 + 10)
    body = json.dumps({**chat_body(text), "model": "async-echo"}).encode()
    connection.request(
        "POST",
        COMPLETIONS,
        body=iter([body[i : i + 65536] for i in range(0, len(body), 65536)]),
        headers={"Authorization": f"Bearer {installation.key}", "Content-Type": "application/json"},
        encode_chunked=True,
    )
    response = connection.getresponse()

    assert response.status == 413
    assert json.loads(response.read())["error"]["code"] == "request_too_large"


# --- the process: start, crash, stop ---------------------------------------------------------


def _start_standalone(installation: Deployment, directory: Path, port: int, **extra: str):
    env = installation.env(
        "standalone",
        PYTHON=sys.executable,
        HOST="127.0.0.1",
        PORT=str(port),
        WORKERS="1",
        MAX_IN_FLIGHT="8",
        GRACEFUL_TIMEOUT="10",
        **extra,
    )
    process = start_process(
        ["bash", "scripts/server"],
        env=env,
        log_path=directory / "standalone.log",
        name="standalone",
    )
    assert wait_until_answers(process, f"http://127.0.0.1:{port}/health"), process.log()
    return process


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_server_starts_on_host_port_and_drains_in_flight_requests_on_sigterm(
    installation, tmp_path
):
    port = _free_port()
    process = _start_standalone(installation, tmp_path, port)
    base = f"http://127.0.0.1:{port}"
    try:
        assert f"Listening at: http://127.0.0.1:{port}" in process.log()
        in_flight = {}
        thread = threading.Thread(
            target=lambda: in_flight.update(answer=chat(base, installation.key, "sleep", "drain"))
        )
        thread.start()
        time.sleep(0.4)  # the request is inside the model now
        process.popen.send_signal(signal.SIGTERM)

        thread.join(timeout=15)
        assert in_flight["answer"].status == 200  # finished, not cut
        assert process.popen.wait(timeout=15) == 0
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
    finally:
        process.stop()


def test_a_crashed_worker_is_replaced(installation, tmp_path):
    port = _free_port()
    process = _start_standalone(installation, tmp_path, port)
    base = f"http://127.0.0.1:{port}"
    try:
        first = _worker_pid(process)
        os.kill(first, signal.SIGKILL)

        def answered_by_a_new_worker() -> bool:
            try:
                return http("GET", base + "/health", timeout=2).status == 200 and (
                    _worker_pid(process) != first
                )
            except (OSError, AssertionError):
                return False

        assert wait_for(answered_by_a_new_worker, seconds=20), process.log()
        assert chat(base, installation.key, "async-echo", "back").content() == "async: back"
    finally:
        process.stop()
