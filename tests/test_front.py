"""What the server bounds, through real sockets: the time a client may take to send its body and
to read the answer, idle connections, HTTP/2, and that waiting clients hold no thread."""

from __future__ import annotations

import json
import socket
import time
from urllib.parse import urlsplit

import psutil
import pytest

from tests.live import chat_body, deployment

pytestmark = pytest.mark.slow

MODELS = "tests/server_models.py"
BODY_TIMEOUT = 1.5
WRITE_TIMEOUT = 1.5
HEADER_TIMEOUT_MS = 1500


@pytest.fixture(scope="module")
def installation(tmp_path_factory):
    directory = tmp_path_factory.mktemp("front")
    records = directory / "records" / "flood"
    records.mkdir(parents=True)
    with deployment(directory) as installation:
        config = directory / "flood.json"
        config.write_text(json.dumps({"record_dir": str(records)}))
        installation.manage(
            "register_model", "flood", f"{MODELS}:Flood", "--model-config", str(config)
        )
        installation.manage("register_model", "echo", f"{MODELS}:AsyncEcho")
        installation.key = installation.create_api_key("front-tests")
        installation.records = records
        installation.url = installation.start_server(
            "front",
            workers=1,
            CHATMODELS_BODY_TIMEOUT=str(BODY_TIMEOUT),
            CHATMODELS_WRITE_TIMEOUT=str(WRITE_TIMEOUT),
            HEADER_TIMEOUT=str(HEADER_TIMEOUT_MS),
        )
        yield installation


def _address(installation) -> tuple[str, int]:
    parts = urlsplit(installation.url)
    return parts.hostname, parts.port


def _worker(installation) -> psutil.Process:
    """The server's one worker process (granian's child running the app)."""
    (process,) = [p for p in installation.processes if p.name == "server on front"]
    (worker,) = psutil.Process(process.popen.pid).children()
    return worker


def _request_head(installation, path: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {installation.key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def _read_until_closed(sock: socket.socket, seconds: float) -> bytes:
    sock.settimeout(seconds)
    data = b""
    try:
        while part := sock.recv(65536):
            data += part
    except TimeoutError:
        pass
    return data


def _echo_answers(installation) -> bool:
    sock = socket.create_connection(_address(installation), timeout=10)
    body = json.dumps({**chat_body("still here"), "model": "echo"}).encode()
    sock.sendall(_request_head(installation, "/v1/chat/completions", len(body)) + body)
    answer = _read_until_closed(sock, 2)
    sock.close()
    return answer.startswith(b"HTTP/1.1 200") and b"still here" in answer


def test_a_body_that_does_not_arrive_in_time_gets_408(installation):
    sock = socket.create_connection(_address(installation), timeout=10)
    sock.sendall(_request_head(installation, "/v1/chat/completions", 100) + b'{"model": ')
    started = time.monotonic()

    answer = _read_until_closed(sock, 10)

    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    error = json.loads(answer.partition(b"\r\n\r\n")[2])["error"]
    assert error["code"] == "request_timeout"
    assert "CHATMODELS_BODY_TIMEOUT" in error["message"]
    assert BODY_TIMEOUT - 0.2 < time.monotonic() - started < BODY_TIMEOUT + 3


def test_slow_bodies_hold_no_threads_and_others_are_answered(installation):
    worker = _worker(installation)
    assert _echo_answers(installation)
    baseline = worker.num_threads()
    sockets = []
    for _ in range(300):
        sock = socket.create_connection(_address(installation), timeout=10)
        sock.sendall(_request_head(installation, "/v1/chat/completions", 1000) + b"{")
        sockets.append(sock)
    time.sleep(0.5)

    during = worker.num_threads()
    answered = _echo_answers(installation)
    for sock in sockets:
        sock.close()

    assert answered
    assert during <= baseline + 2, (baseline, during)


def test_a_stream_nobody_reads_is_ended_by_the_write_timeout(installation):
    worker = _worker(installation)
    memory_before = worker.memory_info().rss
    closed_before = len(list(installation.records.iterdir()))
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(_address(installation))
    body = json.dumps({**chat_body("flood"), "model": "flood", "stream": True}).encode()
    sock.sendall(_request_head(installation, "/v1/chat/completions", len(body)) + body)
    assert sock.recv(12) == b"HTTP/1.1 200"
    # ...and never read again: the model could send 100 MB.

    peak = memory_before
    deadline = time.monotonic() + WRITE_TIMEOUT + 8
    while time.monotonic() < deadline:
        peak = max(peak, worker.memory_info().rss)
        if len(list(installation.records.iterdir())) > closed_before:
            break  # the model was stopped
        time.sleep(0.1)

    assert len(list(installation.records.iterdir())) == closed_before + 1
    assert peak - memory_before < 50 * 2**20, f"grew by {(peak - memory_before) >> 20} MiB"
    sock.setblocking(False)
    drained = 0
    sock.settimeout(5)
    try:
        while part := sock.recv(2**20):
            drained += len(part)
    except (TimeoutError, ConnectionResetError):
        pytest.fail("the server kept the connection open")
    assert drained < 20 * 2**20  # what was buffered when it stopped, not the 100 MB
    sock.close()
    assert _echo_answers(installation)


def test_an_idle_keep_alive_connection_is_closed(installation):
    sock = socket.create_connection(_address(installation), timeout=10)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    first = sock.recv(65536)
    assert first.startswith(b"HTTP/1.1 200")
    started = time.monotonic()

    rest = _read_until_closed(sock, HEADER_TIMEOUT_MS / 1000 + 5)

    assert rest == b""
    assert time.monotonic() - started < HEADER_TIMEOUT_MS / 1000 + 4
    sock.close()


def test_http2_cleartext_is_off_unless_asked(installation):
    sock = socket.create_connection(_address(installation), timeout=10)
    # The HTTP/2 connection preface and an empty SETTINGS frame (prior knowledge, no upgrade).
    sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")

    answer = _read_until_closed(sock, 5)

    # Not an HTTP/2 SETTINGS frame: an HTTP/1.1 error, or the connection closed.
    assert answer == b"" or answer.startswith(b"HTTP/1.1 4"), answer[:100]
    sock.close()


def test_idle_http2_connections_hold_no_threads_when_http2_is_on(installation):
    url = installation.start_server("front-h2", workers=1, HTTP2="true")
    (process,) = [p for p in installation.processes if p.name == "server on front-h2"]
    (worker,) = psutil.Process(process.popen.pid).children()
    parts = urlsplit(url)
    baseline = worker.num_threads()
    sockets = []
    for _ in range(200):
        sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        sockets.append(sock)
    first = sockets[0].recv(9)
    time.sleep(0.5)

    during = worker.num_threads()
    for sock in sockets:
        sock.close()

    assert first[3] == 0x04  # the server's SETTINGS frame: HTTP/2 spoken
    assert during <= baseline + 2, (baseline, during)
