"""Limits and usage that hold when an attacker or a fault pushes on them: many concurrent
requests against a small budget (reservations), models reporting impossible token counts, a
limits store that stops, restarts empty or is locked."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from chatmodels import limits, selectors, services, usage
from chatmodels.models import UsageBucket
from chatmodels.serving import runtime
from tests.api.calls import COMPLETIONS, completion_text, error_of, post, stream_events
from tests.helpers import chat, make_key, register
from tests.live import deployment, free_port, http, poll

REPORTED = "tests/reported_usage_models.py:ReportedUsage"
REDIS_URL = os.environ.get("REDIS_URL", "")
needs_redis = pytest.mark.skipif(
    not REDIS_URL, reason="no REDIS_URL: scripts/test runs these against scripts/with-redis"
)
STORES = [
    pytest.param("database", id="database"),
    pytest.param("redis", id="redis", marks=[pytest.mark.redis, needs_redis]),
]


# --- 200 concurrent requests against a small budget, through the real server ------------------


@pytest.fixture(scope="module", params=STORES)
def live(request, tmp_path_factory):
    """A 2-worker server serving counter/1 (WordCount), its limits in the database or Redis."""
    directory = tmp_path_factory.mktemp(f"reservations-{request.param}")
    extra = {}
    if request.param == "redis":
        cache_url = REDIS_URL.replace("redis://", "rediscache://", 1)
        extra["CACHE_URL"] = f"{cache_url}?key_prefix=live-{uuid.uuid4().hex}"
    with deployment(directory) as installation:
        installation.manage("register_model", "counter", "tests/metered_models.py:WordCount")
        installation.server = installation.start_server(
            "web", workers=2, max_in_flight=256, **extra
        )
        yield installation


def _wait_for_a_fresh_minute(seconds_needed: float = 25.0) -> None:
    """Wait for the next minute if this one has fewer than `seconds_needed` left, so that the
    requests that follow count in one window of the per-minute limit."""
    left = 60 - time.time() % 60
    if left < seconds_needed:
        time.sleep(left + 0.05)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("option", "code"),
    [("--monthly-budget", "insufficient_quota"), ("--tpm", "rate_limit_exceeded")],
)
@pytest.mark.parametrize("stream", [False, True], ids=["answers", "streams"])
def test_concurrent_requests_overspend_a_small_budget_by_at_most_one_reservation(
    live, option, code, stream
):
    budget = 100
    key = live.create_api_key(f"small{option}{stream}", option, str(budget))
    # WordCount reports one token per word each way: 5 words, 10 tokens; it takes 1 s.
    text = "sleep 1 a b c"
    body = {"messages": [{"role": "user", "content": text}], "max_tokens": 10, "stream": stream}
    # What a request reserves: its max_tokens and its prompt at a token per 4 characters.
    reservation = 10 + (len(text) + 3) // 4
    _wait_for_a_fresh_minute()

    def call(_):
        return http(
            "POST",
            live.server + COMPLETIONS,
            body={**body, "model": "counter"},
            key=key,
            timeout=120,
        )

    with ThreadPoolExecutor(max_workers=200) as pool:
        replies = list(pool.map(call, range(200)))

    served = [reply for reply in replies if reply.status == 200]
    refused = [reply for reply in replies if reply.status != 200]
    assert served, [reply.body for reply in replies[:3]]
    assert {reply.status for reply in refused} == {429}, {
        json.dumps(reply.body) for reply in refused if reply.status != 429
    }
    assert {reply.body["error"]["code"] for reply in refused} == {code}
    # Without reservations all 200 were served: 2,000 tokens against a budget of 100.
    assert len(served) * 10 <= budget + reservation
    if stream:
        assert all(reply.body.rstrip().endswith(b"data: [DONE]") for reply in served)


# --- token counts a model reports are range-checked ---------------------------------------------


@pytest.fixture
def reported(db):
    runtime.stop_workers()
    usage.discard()
    yield register(name="reported", model=REPORTED)
    usage.discard()
    runtime.stop_workers()


@pytest.mark.parametrize(
    ("field", "value"),
    [("prompt_tokens", 2**63), ("completion_tokens", -1), ("prompt_tokens", 2**53)],
)
@pytest.mark.parametrize("stream", [False, True], ids=["answer", "stream"])
def test_an_impossible_token_count_is_a_502_naming_the_field_and_usage_keeps_counting(
    client, reported, field, value, stream
):
    key = services.create_api_key(name="limited", monthly_token_budget=10**6)[1]
    told = {"prompt_tokens": 3, "completion_tokens": 4, field: value}

    response = post(
        client, COMPLETIONS, chat(json.dumps(told), model="reported", stream=stream), key=key
    )

    # Streamed, the status line had gone out: the error is the last event.
    error = stream_events(response)[-1]["error"] if stream else error_of(response, 502)
    assert error["code"] == "invalid_model_output"
    assert f"usage.{field}" in error["message"]
    assert "between 0 and 9007199254740991" in error["message"]
    # Other requests, of this key and others, go on being counted.
    other = make_key(name="other")[1]
    for raw in (key, other, key):
        assert completion_text(post(client, COMPLETIONS, chat("{}", model="reported"), key=raw))
    assert usage.flush() >= 1
    rows = UsageBucket.objects.filter(model__name="reported")
    assert sum(row.requests for row in rows) == 4
    assert sum(row.model_errors for row in rows) == 1
    assert all(0 <= row.prompt_tokens < 2**53 for row in rows)


def test_one_bucket_the_database_cannot_write_does_not_stop_the_others(reported, caplog):
    version = selectors.resolve_version(name="reported")
    (good_key, good_raw), (bad_key, bad_raw) = make_key(name="good"), make_key(name="bad")
    good, bad = selectors.get_api_key(good_raw), selectors.get_api_key(bad_raw)
    # Past what the database's integer column holds: the write of this one bucket fails.
    usage.record(version, bad, seconds=0.1, prompt_tokens=2**63)
    usage.record(version, good, seconds=0.1, prompt_tokens=5)

    for _ in range(usage.STRIKES):
        usage.flush()
        usage.record(version, good, seconds=0.1, prompt_tokens=5)
    usage.flush()

    written = UsageBucket.objects.get(api_key=good_key)
    assert (written.requests, written.prompt_tokens) == (usage.STRIKES + 1, 5 * (usage.STRIKES + 1))
    assert not UsageBucket.objects.filter(api_key=bad_key).exists()
    assert usage.pending() == {}
    dropped = [r.getMessage() for r in caplog.records if "dropped a bucket" in r.getMessage()]
    assert len(dropped) == 1 and "1 requests, 9223372036854775808 prompt" in dropped[0]


# --- the limits store stops, restarts empty, or is locked ---------------------------------------


class RedisServer:
    """A throwaway redis-server of this test's own on a free port (no persistence), which the
    test stops and starts again."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import redis

        def answers() -> bool:
            try:
                with redis.Redis.from_url(self.url, socket_timeout=0.5) as client:
                    return bool(client.ping())
            except redis.RedisError:
                return False

        assert poll(answers, until=bool), "redis-server did not start"

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def own_redis(tmp_path, settings):
    if not shutil.which("redis-server"):
        pytest.skip("no redis-server: scripts/with-redis installs it")
    server = RedisServer(tmp_path)
    server.start()
    before = settings.CACHES
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": server.url,
        }
    }
    settings.CHATMODELS_LIMITS_RETRY_SECONDS = 0.2
    yield server
    settings.CACHES = before  # the teardown of other fixtures clears the cache
    server.stop()


@pytest.fixture
def counter(db):
    runtime.stop_workers()
    yield register(name="counter", model="tests/metered_models.py:WordCount")
    runtime.stop_workers()


@pytest.mark.redis
def test_redis_stopped_refuses_limited_keys_with_503_spares_the_others_and_recovers(
    client, counter, own_redis, settings
):
    limited = services.create_api_key(name="limited", requests_per_minute=1000)[1]
    unlimited = make_key(name="unlimited")[1]
    assert post(client, COMPLETIONS, chat("a", model="counter"), key=limited).status_code == 200

    own_redis.stop()
    limits.forget()  # no lease left over: the next request must ask the store
    refused = [post(client, COMPLETIONS, chat("a", model="counter"), key=limited) for _ in range(3)]

    for response in refused:
        error = error_of(response, 503)
        assert error["code"] == "limits_unavailable"
        assert int(response["Retry-After"]) >= 1
    assert completion_text(post(client, COMPLETIONS, chat("b", model="counter"), key=unlimited))
    settings.CHATMODELS_LIMITS_FAIL_OPEN = True
    assert post(client, COMPLETIONS, chat("c", model="counter"), key=limited).status_code == 200
    settings.CHATMODELS_LIMITS_FAIL_OPEN = False

    own_redis.start()
    recovered = poll(
        lambda: post(client, COMPLETIONS, chat("d", model="counter"), key=limited).status_code,
        until=lambda status: status == 200,
    )
    assert recovered == 200


@pytest.mark.redis
def test_the_monthly_budget_is_kept_across_a_restart_of_redis(client, counter, own_redis):
    key = services.create_api_key(name="budget", monthly_token_budget=8)[1]
    assert completion_text(post(client, COMPLETIONS, chat("a b c d", model="counter"), key=key))
    assert (
        error_of(post(client, COMPLETIONS, chat("x", model="counter"), key=key), 429)["code"]
        == "insufficient_quota"
    )

    own_redis.stop()  # no persistence: everything it held is gone
    own_redis.start()
    limits.forget()  # and the server restarted: nothing held in memory either

    refused = poll(
        lambda: post(client, COMPLETIONS, chat("x", model="counter"), key=key),
        until=lambda response: response.status_code != 503,
    )
    assert error_of(refused, 429)["code"] == "insufficient_quota"


@pytest.mark.slow
def test_a_locked_sqlite_database_is_a_503_for_limited_keys_not_a_500(tmp_path):
    if os.environ.get("DATABASE_URL", "").startswith("postgres"):
        pytest.skip("SQLite's write lock")
    with deployment(tmp_path) as installation:
        installation.manage("register_model", "counter", "tests/metered_models.py:WordCount")
        limited = installation.create_api_key("limited", "--rpm", "1000")
        unlimited = installation.create_api_key("unlimited")
        server = installation.start_server("web", workers=1)
        url = server + COMPLETIONS
        body = {"model": "counter", "messages": [{"role": "user", "content": "a"}]}
        assert http("POST", url, body=body, key=limited).status == 200

        # Another process holds SQLite's write lock (a long migration, a stuck writer).
        locker = sqlite3.connect(str(tmp_path / "shared.sqlite3"), timeout=5)
        locker.execute("BEGIN IMMEDIATE")
        try:
            # The lease of the first request may cover a few more: ask until the store is needed.
            replies = [http("POST", url, body=body, key=limited) for _ in range(40)]
            assert http("POST", url, body=body, key=unlimited).status == 200
        finally:
            locker.rollback()
            locker.close()

        statuses = {reply.status for reply in replies}
        assert 500 not in statuses and 503 in statuses, statuses
        refused = next(reply for reply in replies if reply.status == 503)
        assert refused.body["error"]["code"] == "limits_unavailable"
        assert int(refused.headers["Retry-After"]) >= 1
        assert (
            poll(lambda: http("POST", url, body=body, key=limited).status, until=lambda s: s == 200)
            == 200
        )
