"""GET /metrics as Prometheus sees it: the counters and histograms it serves, their labels,
who may read them, and the whole host's numbers when the server runs two worker processes."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.parser import text_string_to_metric_families

from chatmodels import metrics, services
from tests.api.calls import error_of, post, stream_events
from tests.helpers import chat, make_key, register, streamed_body
from tests.live import chat_body, deployment, http, poll
from tests.metered_models import WordCount

COMPLETIONS = "/v1/chat/completions"
INVOCATIONS = "/api/models/counter/invocations"
METRICS = "/metrics"


def parse(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of a Prometheus text page: (name, labels) → value."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(client, **headers) -> dict[tuple[str, frozenset], float]:
    response = client.get(METRICS, **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    return parse(response.content.decode())


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def increase(before, after, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


@pytest.fixture
def counter(db):
    """counter/1: WordCount, usage = words sent and words answered."""
    return register(name="counter", model=WordCount())


# --- what is counted ---------------------------------------------------------------------------


def test_requests_duration_and_tokens_rise_by_what_was_sent(client, counter, key):
    before = scrape(client)

    for text in ("one", "two words", "three words here"):
        assert post(client, INVOCATIONS, chat(text), key=key).status_code == 200
    assert post(client, COMPLETIONS, chat("a b", model="counter"), key=key).status_code == 200

    after = scrape(client)
    labels = {"model": "counter", "version": "1"}
    invocations = {**labels, "route": "model-invocations"}
    completions = {**labels, "route": "chat-completions"}
    assert increase(before, after, "chatmodels_requests_total", **invocations, status="200") == 3
    assert increase(before, after, "chatmodels_requests_total", **completions, status="200") == 1
    assert increase(before, after, "chatmodels_request_duration_seconds_count", **invocations) == 3
    assert increase(before, after, "chatmodels_request_duration_seconds_count", **completions) == 1
    assert increase(before, after, "chatmodels_request_duration_seconds_sum", **invocations) > 0
    # 1 + 2 + 3 + 2 words, each way.
    assert increase(before, after, "chatmodels_tokens_total", **labels, kind="prompt") == 8
    assert increase(before, after, "chatmodels_tokens_total", **labels, kind="completion") == 8
    # Only streams have a time to first token.
    assert (
        increase(before, after, "chatmodels_time_to_first_token_seconds_count", **invocations) == 0
    )


def test_a_long_queue_is_added_up_by_the_request_that_fills_it(client, counter, key, monkeypatch):
    # Requests are queued as they end and added up by the writer (every second, and before a
    # scrape); a worker whose writer falls behind adds its queue up once it is long.
    monkeypatch.setattr(metrics._tallies, "add_up_at", 3)
    before = scrape(client)

    for text in ("one", "two words", "three", "four", "five six", "seven", "eight"):
        assert post(client, INVOCATIONS, chat(text), key=key).status_code == 200
        assert len(metrics._tallies.queue) < 3

    after = scrape(client)
    invocations = {"model": "counter", "version": "1", "route": "model-invocations"}
    assert increase(before, after, "chatmodels_requests_total", **invocations, status="200") == 7
    assert increase(before, after, "chatmodels_request_duration_seconds_count", **invocations) == 7
    prompt = {"model": "counter", "version": "1", "kind": "prompt"}
    assert increase(before, after, "chatmodels_tokens_total", **prompt) == 9
    assert value(after, "chatmodels_in_flight_requests", model="counter") == 0


def test_streams_observe_time_to_first_token_and_their_tokens(client, counter, key):
    before = scrape(client)

    for _ in range(2):
        events = stream_events(post(client, INVOCATIONS, chat("x y z", stream=True), key=key))
        assert events[-1] == "[DONE]"

    after = scrape(client)
    labels = {"model": "counter", "version": "1", "route": "model-invocations"}
    assert increase(before, after, "chatmodels_time_to_first_token_seconds_count", **labels) == 2
    assert increase(before, after, "chatmodels_requests_total", **labels, status="200") == 2
    # The usage of the stream's last chunk, though the client did not ask for it.
    tokens = {"model": "counter", "version": "1"}
    assert increase(before, after, "chatmodels_tokens_total", **tokens, kind="completion") == 6


def test_an_unknown_model_is_counted_without_its_name_as_a_label(client, counter, key):
    before = scrape(client)

    for name in ("no-such-model", "another-made-up-name"):
        error_of(post(client, COMPLETIONS, chat(model=name), key=key), 404)

    after = scrape(client)
    unknown = {"model": "", "version": "", "route": "chat-completions", "status": "404"}
    assert increase(before, after, "chatmodels_requests_total", **unknown) == 2
    names = {dict(labels).get("model") for _name, labels in after}
    assert "no-such-model" not in names and "another-made-up-name" not in names


def test_model_failures_are_counted_by_type_and_status(client, counter, key):
    before = scrape(client)

    error_of(post(client, INVOCATIONS, chat("raise"), key=key), 500)
    error_of(post(client, INVOCATIONS, chat("raise", stream=True), key=key), 500)

    after = scrape(client)
    labels = {"model": "counter", "version": "1"}
    assert increase(before, after, "chatmodels_model_errors_total", **labels, type="raised") == 2
    assert (
        increase(
            before,
            after,
            "chatmodels_requests_total",
            **labels,
            route="model-invocations",
            status="500",
        )
        == 2
    )


def test_a_request_over_a_limit_is_counted_as_429(client, counter):
    raw_key = services.create_api_key(name="tight", requests_per_minute=1)[1]
    before = scrape(client)

    post(client, INVOCATIONS, chat("a"), key=raw_key)
    error_of(post(client, INVOCATIONS, chat("a"), key=raw_key), 429)

    after = scrape(client)
    labels = {"model": "counter", "version": "1", "route": "model-invocations"}
    assert increase(before, after, "chatmodels_requests_total", **labels, status="200") == 1
    assert increase(before, after, "chatmodels_requests_total", **labels, status="429") == 1


def test_an_open_stream_is_in_flight_until_it_ends(client, counter, key):
    before = scrape(client)
    response = post(client, INVOCATIONS, chat("hold 0 then more", stream=True), key=key)

    during = scrape(client)
    body = streamed_body(response)
    response.close()
    after = scrape(client)

    assert increase(before, during, "chatmodels_in_flight_requests", model="counter") == 1
    assert increase(before, after, "chatmodels_in_flight_requests", model="counter") == 0
    assert body.endswith(b"data: [DONE]\n\n")


def test_loading_a_version_is_timed_once_per_process(client, counter, key):
    before = scrape(client)

    post(client, INVOCATIONS, chat("a"), key=key)
    post(client, INVOCATIONS, chat("b"), key=key)

    after = scrape(client)
    labels = {"model": "counter", "version": "1"}
    assert increase(before, after, "chatmodels_model_load_seconds_count", **labels) == 1


# --- who may read them -------------------------------------------------------------------------

ELSEWHERE = {"REMOTE_ADDR": "10.1.2.3"}


@pytest.mark.django_db
def test_metrics_are_open_to_this_host_only_by_default(client):
    assert client.get(METRICS).status_code == 200  # the test client comes from 127.0.0.1
    assert client.get(METRICS, REMOTE_ADDR="::1").status_code == 200

    error = error_of(client.get(METRICS, **ELSEWHERE), 401)
    assert error["code"] == "invalid_api_key"
    assert "metrics" in error["message"]
    # A proxy on this host forwards requests from elsewhere: they are not the host's own.
    forwarded = client.get(METRICS, HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert error_of(forwarded, 401)["code"] == "invalid_api_key"


@pytest.mark.django_db
def test_from_elsewhere_a_key_needs_the_metrics_permission(client):
    plain = make_key(name="plain")[1]
    reader = services.create_api_key(name="prometheus", can_read_metrics=True)[1]

    denied = error_of(client.get(METRICS, HTTP_AUTHORIZATION=f"Bearer {plain}", **ELSEWHERE), 403)
    allowed = client.get(METRICS, HTTP_AUTHORIZATION=f"Bearer {reader}", **ELSEWHERE)
    wrong = client.get(METRICS, HTTP_AUTHORIZATION="Bearer cm_wrong", **ELSEWHERE)

    assert denied == {
        "message": "API key 'plain' may not read metrics",
        "type": "permission_error",
        "param": None,
        "code": "metrics_not_allowed",
    }
    assert allowed.status_code == 200
    assert b"# TYPE chatmodels_requests_total counter" in allowed.content
    assert error_of(wrong, 401)["code"] == "invalid_api_key"


@pytest.mark.django_db
def test_a_setting_opens_metrics_to_all_and_another_turns_them_off(client, settings):
    settings.CHATMODELS_METRICS_PUBLIC = True
    assert client.get(METRICS, **ELSEWHERE).status_code == 200

    settings.CHATMODELS_METRICS = False
    assert error_of(client.get(METRICS), 404)["code"] == "not_found"


@pytest.mark.django_db
def test_a_scrape_over_plain_http_is_not_redirected(client, settings):
    settings.SECURE_SSL_REDIRECT = True

    assert client.get(METRICS).status_code == 200
    assert client.get("/v1/models").status_code == 301  # the API itself is


# --- through the real server: two worker processes ---------------------------------------------


def _per_process(directory: Path, workdir: Path) -> dict[int, dict]:
    """Each worker process's own samples, from its files in the multiprocess folder."""
    files_by_pid: dict[int, list[Path]] = {}
    for path in directory.glob("*.db"):
        files_by_pid.setdefault(int(path.stem.rsplit("_", 1)[1]), []).append(path)
    result = {}
    for pid, files in files_by_pid.items():
        alone = workdir / str(pid)
        alone.mkdir()
        for path in files:
            shutil.copy(path, alone / path.name)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(alone))
        result[pid] = parse(generate_latest(registry).decode())
    return result


def _scrape_live(server: str, key: str | None = None) -> dict:
    reply = http("GET", server + METRICS, key=key)
    assert reply.status == 200, reply.body
    return parse(reply.body.decode())


def _worker_pids(server_pid: int) -> list[int]:
    return [
        int(pid)
        for pid in Path(f"/proc/{server_pid}/task/{server_pid}/children").read_text().split()
    ]


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """A deployment serving counter/1 (WordCount) with 2 workers of 2 threads each."""
    directory = tmp_path_factory.mktemp("metrics")
    with deployment(directory) as installation:
        installation.manage("register_model", "counter", "tests/metered_models.py:WordCount")
        installation.key = installation.create_api_key("metrics-tests")
        installation.server = installation.start_server("web", workers=2, max_in_flight=2)
        port = installation.server.rsplit(":", 1)[1]
        installation.metrics_dir = directory / "web" / f"metrics-{port}"
        yield installation


@pytest.mark.slow
def test_counters_rise_by_exactly_n_across_two_worker_processes(live, tmp_path):
    server, key = live.server, live.key
    url = server + "/v1/chat/completions"
    before = _scrape_live(server)

    def call(index: int) -> int:
        stream = index % 4 == 0
        body = {**chat_body(f"sleep 0.1 word{index}"), "model": "counter", "stream": stream}
        return http("POST", url, body=body, key=key, timeout=60).status

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(call, range(40)))

    assert statuses == [200] * 40
    labels = {"model": "counter", "version": "1"}
    route = {**labels, "route": "chat-completions"}
    # The worker that answers the scrape shows its own requests at once; the other one writes
    # its tallies every second (metrics.WRITE_SECONDS).
    poll(
        lambda: _scrape_live(server),
        until=lambda after: (
            increase(before, after, "chatmodels_requests_total", **route, status="200") >= 40
        ),
    )
    time.sleep(2 * metrics.WRITE_SECONDS)  # and no more come: exactly N
    after = _scrape_live(server)
    assert increase(before, after, "chatmodels_requests_total", **route, status="200") == 40
    assert increase(before, after, "chatmodels_request_duration_seconds_count", **route) == 40
    assert increase(before, after, "chatmodels_time_to_first_token_seconds_count", **route) == 10
    assert increase(before, after, "chatmodels_tokens_total", **labels, kind="prompt") == 120
    assert increase(before, after, "chatmodels_tokens_total", **labels, kind="completion") == 120
    assert value(after, "chatmodels_in_flight_requests", model="counter") == 0
    # Both workers answered some of them, and /metrics added up their counts.
    served = {
        pid: value(samples, "chatmodels_requests_total", **route, status="200")
        for pid, samples in _per_process(live.metrics_dir, tmp_path).items()
    }
    assert sum(served.values()) == value(after, "chatmodels_requests_total", **route, status="200")
    assert len([pid for pid, count in served.items() if count > 0]) == 2, served


@pytest.mark.slow
def test_a_dead_workers_in_flight_requests_stop_counting(live):
    server, key = live.server, live.key
    process = next(p for p in live.processes if p.name == "server on web")
    stream_started = threading.Event()

    def hold_a_stream() -> None:
        body = {**chat_body("hold 30 x"), "model": "counter", "stream": True}
        stream_started.set()
        # The worker is killed under it: whatever breaks is expected.
        with contextlib.suppress(Exception):
            http("POST", server + "/v1/chat/completions", body=body, key=key, timeout=60)

    threading.Thread(target=hold_a_stream, daemon=True).start()
    stream_started.wait(5)
    deadline = time.monotonic() + 10
    while value(_scrape_live(server), "chatmodels_in_flight_requests", model="counter") != 1:
        assert time.monotonic() < deadline, "the stream never showed as in flight"
        time.sleep(0.1)

    before = _scrape_live(server)
    old = _worker_pids(process.popen.pid)
    for pid in old:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while True:
        workers = set(_worker_pids(process.popen.pid))
        if len(workers) == 2 and not workers & set(old):
            break
        assert time.monotonic() < deadline, "the workers were not replaced"
        time.sleep(0.2)

    def scrape_when_answered() -> dict:
        for _attempt in range(100):
            try:
                return _scrape_live(server)
            except (OSError, AssertionError):
                time.sleep(0.2)
        raise AssertionError("no worker answered /metrics")

    after = scrape_when_answered()
    assert value(after, "chatmodels_in_flight_requests", model="counter") == 0
    # What the dead workers counted is still counted.
    for name, labels in before:
        if name == "chatmodels_requests_total":
            assert after[(name, labels)] == before[(name, labels)]
