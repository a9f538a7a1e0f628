"""Per-key limits: requests per minute, tokens per minute, a monthly token budget; 429 with
Retry-After and an OpenAI error naming the limit; one count shared by every worker process, in
the database by default and in Redis when the cache is Redis (REDIS_URL; scripts/test starts
one)."""

from __future__ import annotations

import os
import shutil
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.parser import text_string_to_metric_families

from chatmodels import limit_stores, limits, services
from chatmodels.exceptions import QuotaExhausted, RateLimited
from chatmodels.models import ApiKey, LimitCounter
from chatmodels.selectors import get_api_key
from tests.api.calls import completion_text, error_of, post, stream_events
from tests.helpers import chat, make_key, register
from tests.live import chat_body, deployment, http, poll
from tests.metered_models import WordCount

INVOCATIONS = "/api/models/counter/invocations"
REDIS_URL = os.environ.get("REDIS_URL", "")
needs_redis = pytest.mark.skipif(
    not REDIS_URL, reason="no REDIS_URL: scripts/test runs these against scripts/with-redis"
)
STORES = [
    pytest.param("database", id="database"),
    pytest.param("redis", id="redis", marks=[pytest.mark.redis, needs_redis]),
]


@pytest.fixture(params=STORES)
def store(request, settings):
    """The limits store under test: the database, or a Redis cache (a fresh key prefix each)."""
    if request.param == "redis":
        settings.CACHES = {
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": REDIS_URL,
                "KEY_PREFIX": f"test-{uuid.uuid4().hex}",
            }
        }
    return request.param


@pytest.fixture
def counter(db):
    """counter/1: WordCount, whose usage counts the words sent and answered."""
    return register(name="counter", model=WordCount())


def limited_key(name: str = "tight", **limits_) -> str:
    return services.create_api_key(name=name, **limits_)[1]


# --- requests per minute -----------------------------------------------------------------------


def test_a_key_over_its_requests_per_minute_gets_429_naming_the_limit(client, counter, store):
    key = limited_key(requests_per_minute=2)
    other = limited_key("other", requests_per_minute=2)
    _within_one_minute()  # across a minute's edge the sliding estimate of 2 is a little under 2

    assert post(client, INVOCATIONS, chat("a"), key=key).status_code == 200
    assert (
        post(client, "/v1/chat/completions", chat("b", model="counter"), key=key).status_code == 200
    )
    refused = post(client, INVOCATIONS, chat("c"), key=key)

    error = error_of(refused, 429)
    assert error["type"] == "rate_limit_error"
    assert error["code"] == "rate_limit_exceeded"
    assert error["message"].startswith("API key 'tight' is over its limit of 2 requests per minute")
    assert 1 <= int(refused["Retry-After"]) <= 120  # at most two windows
    assert f"retry in {refused['Retry-After']} s" in error["message"]
    # Each key has its own count.
    assert completion_text(post(client, INVOCATIONS, chat("d"), key=other)) == "d"


def test_a_limit_of_zero_lets_nothing_through(client, counter, store):
    key = limited_key(requests_per_minute=0)

    refused = post(client, INVOCATIONS, chat("a"), key=key)

    assert error_of(refused, 429)["message"].startswith(
        "API key 'tight' is over its limit of 0 requests per minute"
    )


def test_refused_requests_do_not_use_up_the_next_minute(store, counter):
    key = get_api_key(limited_key(requests_per_minute=2))
    start = 1_800_000_000  # the start of a minute

    limits.check(key, now=start + 10)
    limits.check(key, now=start + 20)
    for second in (21, 30, 59):
        with pytest.raises(RateLimited):
            limits.check(key, now=start + second)
    # A minute later only the two that went through count: the sliding window lets one in as
    # soon as they have slid half out (2 x 30/60 + 1 ≤ 2).
    with pytest.raises(RateLimited) as early:
        limits.check(key, now=start + 61)
    limits.check(key, now=start + 61 + early.value.retry_after)


def test_the_window_slides_so_a_burst_across_a_minute_edge_is_not_let_through_twice(store, counter):
    key = get_api_key(limited_key(requests_per_minute=10))
    start = 1_800_000_000

    for _ in range(10):
        limits.check(key, now=start + 59)  # the end of one minute

    with pytest.raises(RateLimited) as refused:
        limits.check(key, now=start + 61)  # the start of the next
    assert refused.value.retry_after == 5  # 10 x (60 - 6)/60 + 1 ≤ 10 at 66 s
    limits.check(key, now=start + 66)


# --- tokens per minute and the monthly budget ---------------------------------------------------


def test_a_key_over_its_tokens_per_minute_gets_429_after_the_answer_that_used_them(
    client, counter, store
):
    key = limited_key(tokens_per_minute=10)
    _within_one_minute()

    # 3 words in, 3 out: 6 tokens; then 4 + 4: 14, past 10. Counted after each answer.
    assert completion_text(post(client, INVOCATIONS, chat("one two three"), key=key))
    assert completion_text(post(client, INVOCATIONS, chat("four five six seven"), key=key))
    refused = post(client, INVOCATIONS, chat("x"), key=key)

    error = error_of(refused, 429)
    assert error["code"] == "rate_limit_exceeded"
    assert error["message"].startswith("API key 'tight' is over its limit of 10 tokens per minute")
    assert 1 <= int(refused["Retry-After"]) <= 120


def test_streamed_answers_count_their_tokens(client, counter, store):
    key = limited_key(tokens_per_minute=4)
    # All in one minute: across a minute's edge the sliding estimate of the stream's 4 tokens is
    # a little under 4 (the previous minute counts for its share still inside the last 60 s).
    _within_one_minute()

    events = stream_events(post(client, INVOCATIONS, chat("two words", stream=True), key=key))
    assert events[-1] == "[DONE]"

    assert error_of(post(client, INVOCATIONS, chat("x"), key=key), 429)["code"] == (
        "rate_limit_exceeded"
    )


def test_a_key_past_its_monthly_budget_gets_429_insufficient_quota_until_next_month(
    client, counter, store
):
    key = limited_key(monthly_token_budget=8)

    assert completion_text(post(client, INVOCATIONS, chat("a b c d"), key=key))  # 8 tokens
    refused = post(client, INVOCATIONS, chat("x"), key=key)

    error = error_of(refused, 429)
    assert error["type"] == "insufficient_quota"
    assert error["code"] == "insufficient_quota"
    now = datetime.now(timezone.utc)
    first = datetime(now.year + (now.month == 12), now.month % 12 + 1, 1, tzinfo=timezone.utc)
    assert error["message"] == (
        f"API key 'tight' has used its monthly budget of 8 tokens; it renews on"
        f" {first:%Y-%m-%d} (UTC)"
    )
    seconds_left = (first - now).total_seconds()
    assert seconds_left - 5 <= int(refused["Retry-After"]) <= seconds_left + 5


def test_the_budget_is_per_calendar_month(store, counter):
    key = get_api_key(limited_key(monthly_token_budget=100))
    end_of_november = datetime(2027, 11, 30, 23, 59, tzinfo=timezone.utc).timestamp()

    limits.record_tokens(key, 100, now=end_of_november)
    with pytest.raises(QuotaExhausted) as refused:
        limits.check(key, now=end_of_november)

    assert refused.value.retry_after == 60
    limits.check(key, now=end_of_november + 60)  # 1 December: a new budget


# --- what it costs -----------------------------------------------------------------------------


def test_keys_without_limits_write_nothing(client, counter, key):
    for _ in range(3):
        assert post(client, INVOCATIONS, chat("a b"), key=key).status_code == 200

    assert LimitCounter.objects.count() == 0


def _within_one_minute(seconds_needed: float = 15.0) -> None:
    """Wait for the next minute if this one has fewer than `seconds_needed` left: the requests
    that follow then count in one window of the per-minute limits."""
    left = 60 - time.time() % 60
    if left < seconds_needed:
        time.sleep(left + 0.05)


def test_counters_of_the_database_store_are_one_row_per_limit_and_window(client, counter):
    key = limited_key(requests_per_minute=100, tokens_per_minute=1000, monthly_token_budget=10**6)
    post(client, INVOCATIONS, chat("warm"), key=make_key(name="warm-up")[1])  # its worker starts
    _within_one_minute()

    for _ in range(3):
        post(client, INVOCATIONS, chat("a b"), key=key)

    key_id = ApiKey.objects.get(name="tight").pk
    used = {f"key:{key_id}:rpm": 3, f"key:{key_id}:tpm": 12, f"key:{key_id}:month": 12}
    counts = dict(LimitCounter.objects.values_list("subject", "count"))
    # A lease counts as used until it is given back: never less than the use.
    assert counts.keys() == used.keys()
    assert all(counts[subject] >= used[subject] for subject in used), counts
    # Settled (after an idle second in a server, and when it stops): exactly the use.
    limits.settle()
    assert dict(LimitCounter.objects.values_list("subject", "count")) == used


def _statements_on_the_counters(queries) -> int:
    return sum(LimitCounter._meta.db_table in query["sql"] for query in queries)


def test_a_busy_key_far_from_its_limits_asks_the_store_once_per_lease_not_per_request(
    client, counter
):
    key = limited_key(
        requests_per_minute=10**6, tokens_per_minute=10**8, monthly_token_budget=10**9
    )

    with CaptureQueriesContext(connection) as queries:
        for _ in range(64):
            assert post(client, INVOCATIONS, chat("a b"), key=key).status_code == 200

    # Without leases: a count and a read before each request, an upsert after (~5 statements).
    assert _statements_on_the_counters(queries.captured_queries) <= 64 // 4  # 11 seen
    limits.settle()
    key_id = ApiKey.objects.get(name="tight").pk
    assert LimitCounter.objects.get(subject=f"key:{key_id}:rpm").count == 64
    assert LimitCounter.objects.get(subject=f"key:{key_id}:tpm").count == 64 * 4


def test_near_its_limit_each_request_is_counted_in_the_store_as_it_comes(client, counter):
    key = limited_key(requests_per_minute=12)
    key_id = ApiKey.objects.get(name="tight").pk

    for sent in range(1, 13):
        assert post(client, INVOCATIONS, chat("a"), key=key).status_code == 200
        # Under 1/16 of the limit is left from the start: no lease, nothing held here.
        assert LimitCounter.objects.get(subject=f"key:{key_id}:rpm").count == sent

    assert error_of(post(client, INVOCATIONS, chat("a"), key=key), 429)["code"] == (
        "rate_limit_exceeded"
    )


def test_a_lease_shrinks_as_the_limit_nears_so_no_request_goes_past_it(store, counter):
    key = get_api_key(limited_key(requests_per_minute=100))
    start = 1_800_000_000

    let_in = 0
    for second in range(200):
        try:
            limits.check(key, now=start + second * 0.25)  # 200 requests in 50 s
        except RateLimited:
            continue
        let_in += 1

    assert let_in == 100


def test_tokens_leased_and_owed_settle_to_exactly_what_was_used(store, counter):
    key = get_api_key(limited_key(tokens_per_minute=10**6, monthly_token_budget=10**9))
    start = 1_800_000_000

    for request in range(40):
        limits.check(key, now=start + request)
        limits.record_tokens(key, 10, now=start + request)

    def counted() -> list[int]:
        answer = limit_stores.apply(
            [], [(f"key:{key.id}:tpm", start), (f"key:{key.id}:month", limits._month_start(start))]
        )
        assert answer is not None
        return answer[1]

    # Far from the limits, a lease of tokens is counted ahead of their use; never less.
    assert all(count >= 400 for count in counted())
    limits.settle()
    assert counted() == [400, 400]


# --- setting limits: the command and the admin ---------------------------------------------------


def test_create_api_key_sets_limits_and_the_metrics_permission(db):
    out = StringIO()
    call_command(
        "create_api_key",
        "batch",
        *("--rpm", "20", "--tpm", "1000", "--monthly-budget", "50000", "--metrics"),
        stdout=out,
    )

    lines = out.getvalue().strip().splitlines()
    assert "(20 requests/min, 1000 tokens/min, 50000 tokens/month, may read metrics)" in lines[0]
    key = get_api_key(lines[-1])
    assert (key.requests_per_minute, key.tokens_per_minute, key.monthly_token_budget) == (
        20,
        1000,
        50000,
    )
    assert key.can_read_metrics


def test_create_api_key_refuses_a_negative_limit_in_one_line(db):
    with pytest.raises(CommandError) as refused:
        call_command("create_api_key", "batch", "--tpm", "-5", stdout=StringIO())

    assert str(refused.value) == "--tpm must be a whole number, 0 or more (or none), got -5"
    assert not ApiKey.objects.exists()


def test_the_admin_sets_limits_when_it_makes_a_key_and_changes_them_later(admin_client):
    response = admin_client.post(
        "/admin/chatmodels/apikey/add/",
        {
            "name": "from-admin",
            "requests_per_minute": "30",
            "tokens_per_minute": "",
            "monthly_token_budget": "900000",
            "can_read_metrics": "on",
        },
    )
    assert response.status_code == 302, response.content
    key = ApiKey.objects.get(name="from-admin")
    assert (key.requests_per_minute, key.tokens_per_minute, key.monthly_token_budget) == (
        30,
        None,
        900000,
    )
    assert key.can_read_metrics

    page = admin_client.get(f"/admin/chatmodels/apikey/{key.pk}/change/").content.decode()
    assert 'name="requests_per_minute"' in page and 'value="30"' in page
    changed = admin_client.post(
        f"/admin/chatmodels/apikey/{key.pk}/change/",
        {"name": "from-admin", "requests_per_minute": "5", "tokens_per_minute": "100"},
    )
    assert changed.status_code == 302, changed.content
    key.refresh_from_db()
    assert (key.requests_per_minute, key.tokens_per_minute, key.monthly_token_budget) == (
        5,
        100,
        None,
    )
    assert not key.can_read_metrics


# --- the global rate (CHATMODELS_THROTTLE_RATE) shares the same store -----------------------------


def test_the_global_rate_counts_in_the_shared_store(client, counter, settings, store):
    settings.CHATMODELS_THROTTLE_RATE = "2/min"
    key = make_key(name="plain")[1]

    assert post(client, INVOCATIONS, chat("a"), key=key).status_code == 200
    assert client.get("/v1/models", HTTP_AUTHORIZATION=f"Bearer {key}").status_code == 200
    refused = post(client, INVOCATIONS, chat("b"), key=key)

    assert error_of(refused, 429)["code"] == "rate_limit_exceeded"
    assert 1 <= int(refused["Retry-After"]) <= 120  # at most two windows


# --- through the real server: two worker processes share one count ------------------------------


def _samples(text: str) -> dict:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _refusals_per_worker(metrics_dir: Path, workdir: Path) -> dict[str, float]:
    """Each worker process's count of 429s so far, from its own metrics files."""
    by_pid: dict[str, list[Path]] = {}
    for path in metrics_dir.glob("*.db"):
        by_pid.setdefault(path.stem.rsplit("_", 1)[1], []).append(path)
    counts = {}
    for pid, files in by_pid.items():
        alone = workdir / f"worker-{pid}-{uuid.uuid4().hex[:6]}"
        alone.mkdir()
        for path in files:
            shutil.copy(path, alone / path.name)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(alone))
        counts[pid] = sum(
            value
            for (name, labels), value in _samples(generate_latest(registry).decode()).items()
            if name == "chatmodels_requests_total" and ("status", "429") in labels
        )
    return counts


@pytest.fixture(scope="module", params=STORES)
def live(request, tmp_path_factory):
    """A 2-worker server serving counter/1, counting limits in the database or in Redis."""
    directory = tmp_path_factory.mktemp(f"limits-{request.param}")
    extra = {}
    prefix = f"live-{uuid.uuid4().hex}"
    if request.param == "redis":
        # A key prefix of its own: other runs may share the Redis server.
        cache_url = REDIS_URL.replace("redis://", "rediscache://", 1)
        extra["CACHE_URL"] = f"{cache_url}?key_prefix={prefix}"
    with deployment(directory) as installation:
        installation.store = request.param
        installation.redis_prefix = prefix
        installation.manage("register_model", "counter", "tests/metered_models.py:WordCount")
        # Leases of idle keys are given back half a second after their last request.
        extra["CHATMODELS_LIMITS_SETTLE_SECONDS"] = "0.5"
        server = installation.start_server("web", workers=2, max_in_flight=4, **extra)
        port = server.rsplit(":", 1)[1]
        installation.server = server
        installation.metrics_dir = directory / "web" / f"metrics-{port}"
        yield installation


def _counters_in_each_store(live) -> tuple[int, int]:
    """How many limit counters the deployment has in its database, and in Redis."""
    database = live.manage(
        "shell", "-c", "from chatmodels.models import LimitCounter as C; print(C.objects.count())"
    )
    in_redis = 0
    if REDIS_URL:
        import redis

        with redis.Redis.from_url(REDIS_URL) as client:
            in_redis = len(client.keys(f"{live.redis_prefix}:chatmodels:limit:*"))
    return int(database.stdout.strip().splitlines()[-1]), in_redis


def _send(live, key: str, texts: list[str]) -> list:
    url = live.server + INVOCATIONS

    def call(text: str):
        return http("POST", url, body=chat_body(text), key=key, timeout=60)

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(call, texts))


def _refused_by_every_worker(live, workdir: Path, send) -> list:
    """`send()`'s replies, after checking that both workers answered some of its 429s."""
    before = _refusals_per_worker(live.metrics_dir, workdir)
    replies = send()
    refused = [reply for reply in replies if reply.status == 429]
    assert refused and all(int(reply.headers["Retry-After"]) >= 1 for reply in refused)
    after = poll(  # each worker writes its metrics every second
        lambda: _refusals_per_worker(live.metrics_dir, workdir),
        until=lambda after: sum(after[pid] - before.get(pid, 0) for pid in after) >= len(refused),
    )
    increase = {pid: after[pid] - before.get(pid, 0) for pid in after}
    assert len(increase) == 2 and all(count > 0 for count in increase.values()), increase
    assert sum(increase.values()) == len(refused)
    return replies


@pytest.mark.slow
def test_requests_per_minute_are_counted_once_for_every_worker(live, tmp_path):
    key = live.create_api_key("rpm", "--rpm", "10")

    replies = _refused_by_every_worker(
        live, tmp_path, lambda: _send(live, key, ["sleep 0.2 hi"] * 40)
    )

    # With a count per process, two workers would let up to 20 through.
    assert sorted(reply.status for reply in replies) == [200] * 10 + [429] * 30
    error = next(reply.body["error"] for reply in replies if reply.status == 429)
    assert error["message"].startswith("API key 'rpm' is over its limit of 10 requests per minute")
    # Counted where CACHE_URL says: Redis when it is Redis, else the database.
    in_database, in_redis = _counters_in_each_store(live)
    if live.store == "redis":
        assert (in_database, in_redis > 0) == (0, True)
    else:
        assert (in_database > 0, in_redis) == (True, 0)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("option", "code"),
    [("--tpm", "rate_limit_exceeded"), ("--monthly-budget", "insufficient_quota")],
)
def test_tokens_are_counted_once_for_every_worker(live, tmp_path, option, code):
    key = live.create_api_key(f"tokens{option}", option, "20")

    # 15 words each way: 30 tokens, past the limit of 20, whichever worker served them.
    first = _send(live, key, [" ".join(["word"] * 15)])
    replies = _refused_by_every_worker(live, tmp_path, lambda: _send(live, key, ["x"] * 30))

    assert first[0].status == 200
    assert [reply.status for reply in replies] == [429] * 30
    assert {reply.body["error"]["code"] for reply in replies} == {code}


def _counts_in_the_store(live, key_name: str) -> dict[str, int]:
    """The key's counts per limit (summed over windows) in the deployment's store."""
    key_id = (
        live.manage(
            "shell",
            "-c",
            "from chatmodels.models import ApiKey;"
            f" print(ApiKey.objects.get(name={key_name!r}).pk)",
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    counts: dict[str, int] = {}
    if live.store == "redis":
        import redis

        with redis.Redis.from_url(REDIS_URL) as client:
            for name in client.keys(f"{live.redis_prefix}:chatmodels:limit:key:{key_id}:*"):
                kind = name.decode().rsplit(":", 2)[1]
                counts[kind] = counts.get(kind, 0) + int(client.get(name))
        return counts
    rows = live.manage(
        "shell",
        "-c",
        "from chatmodels.models import LimitCounter as C\n"
        f"for c in C.objects.filter(subject__startswith='key:{key_id}:'):"
        " print('COUNT', c.subject, c.count)",
    ).stdout.split("\n")
    for row in rows:
        if not row.startswith("COUNT "):
            continue  # a log line
        _, subject, count = row.split()
        kind = subject.rsplit(":", 1)[1]
        counts[kind] = counts.get(kind, 0) + int(count)
    return counts


@pytest.mark.slow
def test_leases_let_no_worker_past_the_limit(live):
    key = live.create_api_key("leased", "--rpm", "60")

    # 60 requests a minute: a worker leases a few at a time while more than 16 are left.
    replies = _send(live, key, ["hi"] * 120)

    assert sorted(reply.status for reply in replies) == [200] * 60 + [429] * 60


@pytest.mark.slow
def test_an_idle_key_s_leases_are_given_back_so_the_store_holds_exactly_the_use(live):
    key = live.create_api_key("idle", "--rpm", "100000", "--tpm", "10000000")

    replies = _send(live, key, ["a b"] * 40)  # 4 tokens each
    assert [reply.status for reply in replies] == [200] * 40

    # Right after the burst the workers may still hold leases (counted ahead of their use);
    # half a second idle, each worker gives back what it did not use.
    used = {"rpm": 40, "tpm": 160}
    assert poll(lambda: _counts_in_the_store(live, "idle"), until=used.__eq__, timeout=20) == used
