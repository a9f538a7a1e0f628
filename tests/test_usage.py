"""Usage accounting: every request that reaches a version is counted once per model, version,
key and hour, with the model's tokens (streams too), errors by kind and latency; counts are kept
in memory and written as additive upserts, by a running server every few seconds and on SIGTERM.
"""

from __future__ import annotations

import json
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chatmodels import usage
from chatmodels.models import ApiKey, RegisteredModel, UsageBucket
from chatmodels.serving import capacity, eventloop, runtime
from tests.api.calls import post, stream_events
from tests.helpers import chat, make_key, register
from tests.live import chat_body, deployment, http
from tests.sample_models import TriggerModel

TOKEN_ECHO = "tests/usage_models.py:TokenEcho"
COMPLETIONS = "/v1/chat/completions"
COUNTERS = (
    "requests",
    "errors",
    "invalid_requests",
    "rejected",
    "model_errors",
    "timeouts",
    "prompt_tokens",
    "completion_tokens",
)


@pytest.fixture(autouse=True)
def _fresh_state():
    runtime.stop_workers()
    usage.discard()
    yield
    usage.discard()
    runtime.stop_workers()


@pytest.fixture
def tokens(db):
    """`tokens/1`, the TokenEcho model (one token per word each way)."""
    return register(name="tokens", model=TOKEN_ECHO)


def totals(**filters) -> dict[str, int]:
    """Every counter summed over the buckets that match (hour boundaries may split a test)."""
    rows = UsageBucket.objects.filter(**filters)
    summed = {name: sum(getattr(row, name) for row in rows) for name in COUNTERS}
    summed["rows"] = len(rows)
    return summed


def counted(**expected: int) -> dict[str, int]:
    """`expected` with every other counter 0 (rows left out)."""
    return {name: expected.get(name, 0) for name in COUNTERS}


def without_rows(summed: dict[str, int]) -> dict[str, int]:
    return {name: value for name, value in summed.items() if name != "rows"}


# --- through Django's test client -----------------------------------------------------------------


def test_requests_are_counted_per_model_version_and_key_with_the_models_tokens(client, tokens):
    first_key, first = make_key(name="first")
    second_key, second = make_key(name="second")
    for text, raw in (("one two three", first), ("four five", first), ("six", second)):
        response = post(client, COMPLETIONS, chat(text, model="tokens"), key=raw)
        assert response.status_code == 200, response.content
    assert UsageBucket.objects.count() == 0  # nothing written on the request path

    assert usage.flush() >= 2

    assert without_rows(totals(api_key=first_key)) == counted(
        requests=2, prompt_tokens=5, completion_tokens=5
    )
    assert without_rows(totals(api_key=second_key)) == counted(
        requests=1, prompt_tokens=1, completion_tokens=1
    )
    row = UsageBucket.objects.filter(api_key=first_key).first()
    assert (row.model.name, row.version) == ("tokens", 1)
    assert row.hour.minute == row.hour.second == row.hour.microsecond == 0
    assert timezone.now() - timedelta(hours=2) < row.hour <= timezone.now()
    assert 0 <= row.latency_ms_max <= row.latency_ms_sum


def test_a_long_queue_is_added_up_by_the_request_that_fills_it(client, tokens, monkeypatch):
    # Requests are queued as they end and added up by the writer; a worker whose writer falls
    # behind adds its queue up on the request path once it is long (kept short here).
    monkeypatch.setattr(usage._buckets, "add_up_at", 3)
    key, raw = make_key(name="queue")
    for text in ("one", "two words", "three words here", "four", "five six", "seven"):
        response = post(client, COMPLETIONS, chat(text, model="tokens"), key=raw)
        assert response.status_code == 200, response.content
        assert len(usage._buckets.queue) < 3

    usage.flush()

    assert without_rows(totals(api_key=key)) == counted(
        requests=6, prompt_tokens=10, completion_tokens=10
    )


@pytest.mark.parametrize("include_usage", [False, True])
def test_a_stream_is_counted_when_it_ends_with_the_usage_of_its_chunks(
    client, tokens, include_usage
):
    key, raw = make_key(name="streams")
    body = chat("one two three four", model="tokens", stream=True)
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    response = post(client, COMPLETIONS, body, key=raw)
    assert usage.pending() == {}  # not before the stream has ended
    events = stream_events(response)
    assert events[-1] == "[DONE]"

    usage.flush()

    assert without_rows(totals(api_key=key)) == counted(
        requests=1, prompt_tokens=4, completion_tokens=4
    )


def test_errors_are_counted_by_kind_and_unknown_models_not_at_all(client, tokens):
    register(name="echo", model=TriggerModel())
    key, raw = make_key(name="errors")
    limited_key, limited = make_key(name="limited", models=["echo"])

    assert (
        post(client, COMPLETIONS, {"model": "tokens", "messages": "x"}, key=raw).status_code == 400
    )
    assert post(client, COMPLETIONS, chat("raise", model="tokens"), key=raw).status_code == 500
    # A model the key may not call is answered as one that does not exist: not counted either.
    assert post(client, COMPLETIONS, chat("hi", model="tokens"), key=limited).status_code == 404
    assert post(client, COMPLETIONS, chat("hi", model="nobody"), key=raw).status_code == 404
    assert post(client, COMPLETIONS, chat("hi", model="tokens/9"), key=raw).status_code == 404
    broken = post(client, COMPLETIONS, chat("break here now", model="tokens", stream=True), key=raw)
    assert stream_events(broken)[-1]["error"]["code"] == "model_error"
    usage.flush()

    assert without_rows(totals(api_key=key)) == counted(
        requests=3, errors=3, invalid_requests=1, model_errors=2
    )
    assert totals(api_key=limited_key)["rows"] == 0
    assert set(UsageBucket.objects.values_list("model__name", flat=True)) == {"tokens"}


def test_a_request_past_capacity_counts_as_rejected(client, tokens, settings):
    settings.CHATMODELS_QUEUE_TIMEOUT = 0
    key, raw = make_key(name="busy")
    model = RegisteredModel.objects.get(name="tokens")
    model.max_concurrency = 1
    model.save()
    held = eventloop.run(
        capacity.acquire(model_id=model.pk, model_name="tokens", max_concurrency=1)
    )
    try:
        response = post(client, COMPLETIONS, chat("hi", model="tokens"), key=raw)
    finally:
        held.release()
    assert response.status_code == 503
    usage.flush()

    assert without_rows(totals(api_key=key)) == counted(requests=1, errors=1, rejected=1)


def test_latency_is_summed_and_its_maximum_kept(client, db):
    register(name="echo", model=TriggerModel())
    key, raw = make_key(name="slow")
    for text in ("slow", "fast"):
        assert post(client, COMPLETIONS, chat(text, model="echo"), key=raw).status_code == 200
    usage.flush()

    rows = list(UsageBucket.objects.filter(api_key=key))
    assert sum(row.requests for row in rows) == 2
    assert max(row.latency_ms_max for row in rows) >= 500  # "slow" sleeps 0.5 s
    assert sum(row.latency_ms_sum for row in rows) >= max(row.latency_ms_max for row in rows)


def test_flushes_add_into_the_same_rows_and_keyless_calls_share_one(client, tokens, settings):
    settings.CHATMODELS_ALLOW_ANONYMOUS = True
    buckets = set()
    for _round in range(2):
        for _call in range(3):
            assert post(client, COMPLETIONS, chat("a b", model="tokens")).status_code == 200
        buckets |= set(usage.pending())
        usage.flush()

    # One row per bucket key however many flushes: NULL keys meet in COALESCE(api_key_id, 0).
    assert totals(api_key=None) == {
        **counted(requests=6, prompt_tokens=12, completion_tokens=12),
        "rows": len(buckets),
    }
    assert len(buckets) <= 2  # one hour, or two if the test ran across an hour's end


def test_a_flush_the_database_fails_is_written_with_the_next(client, tokens, monkeypatch):
    key, raw = make_key(name="retried")
    for text in ("one two", "three"):
        assert post(client, COMPLETIONS, chat(text, model="tokens"), key=raw).status_code == 200

    def database_down(rows):
        # A request ends while the write is under way, and is added up at once (as the request
        # that fills a long queue adds it up): the counts that come back add to its.
        response = post(client, COMPLETIONS, chat("four five six", model="tokens"), key=raw)
        assert response.status_code == 200
        raise OperationalError("the database is down")

    with monkeypatch.context() as down:
        down.setattr(usage, "_upsert", database_down)
        down.setattr(usage._buckets, "add_up_at", 1)
        with pytest.raises(OperationalError):
            usage.flush()
    assert UsageBucket.objects.count() == 0
    usage.flush()

    assert without_rows(totals(api_key=key)) == counted(
        requests=3, prompt_tokens=6, completion_tokens=6
    )
    for row in UsageBucket.objects.filter(api_key=key):
        assert 0 <= row.latency_ms_max <= row.latency_ms_sum
    assert usage.pending() == {}


def test_the_playground_counts_against_the_user_s_own_key(admin_client, admin_user, tokens):
    response = admin_client.post(
        "/admin/chatmodels/registeredmodel/playground/invoke/",
        data=json.dumps({"model": "tokens", "messages": [{"role": "user", "content": "x y"}]}),
        content_type="application/json",
    )
    assert stream_events(response)[-1] == "[DONE]"
    usage.flush()

    key = ApiKey.objects.get(playground_user=admin_user)
    assert key.name == f"playground: {admin_user.get_username()}"
    assert without_rows(totals(api_key=key)) == counted(
        requests=1, prompt_tokens=2, completion_tokens=2
    )
    assert totals(api_key=None)["rows"] == 0


def test_nothing_is_counted_when_usage_is_off(client, tokens, settings):
    settings.CHATMODELS_USAGE = False
    raw = make_key(name="off")[1]
    assert post(client, COMPLETIONS, chat("hi", model="tokens"), key=raw).status_code == 200

    assert usage.pending() == {}
    assert usage.flush() == 0
    assert UsageBucket.objects.count() == 0


def test_requests_cost_no_write_and_a_flush_is_one_statement(client, tokens):
    raw = make_key(name="queries")[1]
    post(client, COMPLETIONS, chat("warm up", model="tokens"), key=raw)  # loads the model
    usage.flush()
    with CaptureQueriesContext(connection) as requests_queries:
        for index in range(20):
            model = "tokens" if index % 2 else "tokens/1"
            assert post(client, COMPLETIONS, chat("hi", model=model), key=raw).status_code == 200
    with CaptureQueriesContext(connection) as flush_queries:
        usage.flush()

    # Nothing is written per request, and the key and versions are remembered (the key and
    # "tokens" since the warm-up): the one query is the first lookup of "tokens/1".
    assert len(requests_queries) == 1
    statements = [q["sql"] for q in flush_queries if "usagebucket" in q["sql"].lower()]
    assert len(statements) == 1
    assert statements[0].startswith('INSERT INTO "chatmodels_usagebucket"')
    assert "ON CONFLICT" in statements[0]


@pytest.mark.django_db(transaction=True)
def test_a_bucket_the_database_refuses_is_dropped_and_the_rest_written(client):
    register(name="tokens", model=TOKEN_ECHO)
    kept_key, kept = make_key(name="kept")
    gone_key, gone = make_key(name="gone")
    for raw in (kept, gone):
        assert post(client, COMPLETIONS, chat("hi", model="tokens"), key=raw).status_code == 200
    ApiKey.objects.filter(pk=gone_key.pk).delete()  # no usage written yet: nothing protects it

    usage.flush()

    assert totals(api_key=kept_key)["requests"] == 1
    assert UsageBucket.objects.count() == totals(api_key=kept_key)["rows"]
    assert usage.pending() == {}


# --- retention ---------------------------------------------------------------------------------


def test_prune_usage_deletes_buckets_older_than_the_retention(db, settings, capsys):
    model = RegisteredModel.objects.create(name="old")
    now = timezone.now().replace(minute=0, second=0, microsecond=0)
    for days in (0, 10, 40, 100):
        UsageBucket.objects.create(model=model, version=1, hour=now - timedelta(days=days))
    settings.CHATMODELS_USAGE_RETENTION_DAYS = 90

    call_command("prune_usage")
    assert "Deleted 1 usage bucket older than 90 days" in capsys.readouterr().out
    call_command("prune_usage", "--older-than", "30")
    assert "Deleted 1 usage bucket older than 30 days" in capsys.readouterr().out

    assert sorted((now - row.hour).days for row in UsageBucket.objects.all()) == [0, 10]


def test_prune_usage_refuses_a_negative_age(db):
    with pytest.raises(CommandError, match=r"^--older-than must be a whole number of days"):
        call_command("prune_usage", "--older-than", "-1")


# --- through the real server, 2 worker processes ------------------------------------------------

SHELL_TOTALS = (
    "import json; from django.db.models import Sum; from chatmodels.models import UsageBucket;"
    " print(json.dumps(UsageBucket.objects.aggregate("
    + ", ".join(f"{name}=Sum('{name}')" for name in COUNTERS)
    + ")))"
)


def _database_totals(installation) -> dict[str, int]:
    output = installation.manage("shell", "-c", SHELL_TOTALS).stdout.strip().splitlines()[-1]
    return {name: value or 0 for name, value in json.loads(output).items()}


def _burst(base: str, key: str, count: int) -> list[int]:
    """`count` requests from 16 threads: every third one streamed, one word per "w"."""

    def call(index: int) -> int:
        body = {**chat_body("w " * (index % 3 + 1)), "model": "tokens"}
        if index % 3 == 0:
            body["stream"] = True
        return http("POST", base + COMPLETIONS, body=body, key=key, timeout=60).status

    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(call, range(count)))


def _expected_tokens(count: int) -> int:
    return sum(index % 3 + 1 for index in range(count))


@pytest.fixture(scope="module")
def installation(tmp_path_factory):
    with deployment(tmp_path_factory.mktemp("usage")) as installation:
        installation.manage("register_model", "tokens", TOKEN_ECHO)
        installation.key = installation.create_api_key("usage-tests")
        yield installation


@pytest.mark.slow
def test_sigterm_right_after_a_burst_loses_no_request(installation):
    # Written only at exit: an hour between flushes, so the exit hook is all that writes.
    base = installation.start_server("exit", workers=2, CHATMODELS_USAGE_FLUSH_SECONDS="3600")
    before = _database_totals(installation)
    statuses = _burst(base, installation.key, 300)
    assert statuses == [200] * 300
    (server,) = [p for p in installation.processes if p.name == "server on exit"]
    assert _database_totals(installation) == before  # nothing written while it runs

    server.popen.send_signal(signal.SIGTERM)
    assert server.popen.wait(timeout=60) == 0, server.log()[-3000:]

    after = _database_totals(installation)
    tokens = _expected_tokens(300)
    assert {name: after[name] - before[name] for name in COUNTERS} == counted(
        requests=300, prompt_tokens=tokens, completion_tokens=tokens
    ), server.log()[-3000:]


@pytest.mark.slow
def test_a_running_server_writes_usage_every_few_seconds_and_serves_it(installation):
    base = installation.start_server("running", workers=2, CHATMODELS_USAGE_FLUSH_SECONDS="0.2")
    key = installation.create_api_key("running")
    assert _burst(base, key, 60) == [200] * 60
    tokens = _expected_tokens(60)

    def served() -> dict[str, int]:
        rows = http("GET", base + "/api/usage/", key=key).body["results"]
        return {
            name: sum(row[name] for row in rows)
            for name in ("requests", "prompt_tokens", "completion_tokens")
        }

    wanted = {"requests": 60, "prompt_tokens": tokens, "completion_tokens": tokens}
    for _attempt in range(100):  # the workers write every 0.2 s: well within 10 s
        if served() == wanted:
            break
        time.sleep(0.1)
    assert served() == wanted
