"""`GET /api/usage/`: who sees what, the filters, day buckets, errors and query counts."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from django.contrib.auth.models import Permission, User

from chatmodels.models import RegisteredModel, UsageBucket
from tests.api.calls import error_of, get
from tests.helpers import make_key

pytestmark = pytest.mark.django_db

DAY = datetime(2026, 11, 20, tzinfo=timezone.utc)


def bucket(model, key, hour: int, *, day: datetime = DAY, version: int = 1, **counts) -> None:
    """A bucket as the flusher would have written it (`hour` hours into `day`)."""
    counts = {"requests": 1, **counts}
    UsageBucket.objects.create(
        model=model, version=version, api_key=key, hour=day + timedelta(hours=hour), **counts
    )


@pytest.fixture
def data(db):
    """Two models, two keys and calls without a key, over two days."""
    echo = RegisteredModel.objects.create(name="echo")
    shout = RegisteredModel.objects.create(name="shout")
    alice, alice_raw = make_key(name="alice")
    bob, bob_raw = make_key(name="bob")
    bucket(
        echo,
        alice,
        9,
        requests=3,
        prompt_tokens=30,
        completion_tokens=12,
        latency_ms_sum=60,
        latency_ms_max=40,
    )
    bucket(echo, alice, 10, requests=2, errors=1, model_errors=1, prompt_tokens=10)
    bucket(echo, alice, 10, version=2, requests=4, completion_tokens=8)
    bucket(shout, alice, 30, requests=1)  # the next day
    bucket(echo, bob, 9, requests=7, errors=2, invalid_requests=1, timeouts=1)
    bucket(shout, None, 11, requests=5)
    return {
        "alice": alice_raw,
        "bob": bob_raw,
        "alice_prefix": alice.prefix,
        "bob_prefix": bob.prefix,
    }


def rows(response) -> list[dict]:
    assert response.status_code == 200, response.content
    return response.json()["results"]


def brief(row: dict) -> tuple:
    key = row["key"]["name"] if row["key"] else None
    return (row["start"][:13], row["model"], row["version"], key, row["requests"])


def test_a_key_sees_only_its_own_usage_newest_first(client, data):
    body = get(client, "/api/usage/", key=data["bob"]).json()

    assert body["count"] == 1
    (row,) = body["results"]
    assert row == {
        "start": "2026-11-20T09:00:00Z",
        "bucket": "hour",
        "model": "echo",
        "version": 1,
        "key": {"name": "bob", "prefix": data["bob_prefix"]},
        "requests": 7,
        "errors": 2,
        "errors_by_kind": {"invalid_request": 1, "rejected": 0, "model_error": 0, "timeout": 1},
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "total_tokens": 0,
        "latency_ms_avg": 0.0,
        "latency_ms_max": 0,
    }
    assert [brief(r) for r in rows(get(client, "/api/usage/", key=data["alice"]))] == [
        ("2026-11-21T06", "shout", 1, "alice", 1),
        ("2026-11-20T10", "echo", 1, "alice", 2),
        ("2026-11-20T10", "echo", 2, "alice", 4),
        ("2026-11-20T09", "echo", 1, "alice", 3),
    ]


def test_a_key_may_not_ask_for_another_keys_usage(client, data):
    mine = get(client, f"/api/usage/?key={data['alice_prefix']}", key=data["alice"])
    assert len(rows(mine)) == 4
    error = error_of(get(client, f"/api/usage/?key={data['bob_prefix']}", key=data["alice"]), 403)
    assert error["message"] == "An API key sees only its own usage."
    assert (error["type"], error["code"]) == ("permission_error", "permission_denied")


def test_staff_see_everyones_usage_and_filter_it(admin_client, data):
    everything = rows(admin_client.get("/api/usage/"))
    assert len(everything) == 6
    assert {row["key"]["name"] if row["key"] else None for row in everything} == {
        "alice",
        "bob",
        None,
    }

    by_key = rows(admin_client.get(f"/api/usage/?key={data['bob_prefix']}"))
    assert [brief(r) for r in by_key] == [("2026-11-20T09", "echo", 1, "bob", 7)]
    by_model = rows(admin_client.get("/api/usage/?model=shout"))
    assert [brief(r) for r in by_model] == [
        ("2026-11-21T06", "shout", 1, "alice", 1),
        ("2026-11-20T11", "shout", 1, None, 5),
    ]
    window = rows(
        admin_client.get("/api/usage/?since=2026-11-20T10:00:00Z&until=2026-11-20T11:00:00Z")
    )
    assert [brief(r) for r in window] == [
        ("2026-11-20T10", "echo", 1, "alice", 2),
        ("2026-11-20T10", "echo", 2, "alice", 4),
    ]


def test_day_buckets_add_up_the_hours_of_each_utc_day(client, data):
    days = rows(get(client, "/api/usage/?bucket=day", key=data["alice"]))

    assert [brief(r) for r in days] == [
        ("2026-11-21T00", "shout", 1, "alice", 1),
        ("2026-11-20T00", "echo", 1, "alice", 5),
        ("2026-11-20T00", "echo", 2, "alice", 4),
    ]
    echo = days[1]
    assert echo["bucket"] == "day"
    assert (echo["prompt_tokens"], echo["completion_tokens"], echo["total_tokens"]) == (40, 12, 52)
    assert (echo["errors"], echo["errors_by_kind"]["model_error"]) == (1, 1)
    assert (echo["latency_ms_avg"], echo["latency_ms_max"]) == (12.0, 40)  # 60 ms over 5


def test_the_listing_is_paginated_like_the_others(client, db):
    model = RegisteredModel.objects.create(name="busy")
    key, raw = make_key(name="busy")
    for hour in range(60):
        bucket(model, key, hour)

    first = get(client, "/api/usage/", key=raw).json()
    assert (first["count"], len(first["results"]), first["previous"]) == (60, 50, None)
    second = get(client, first["next"], key=raw).json()
    assert len(second["results"]) == 10
    assert second["results"][-1]["start"] == "2026-11-20T00:00:00Z"


@pytest.mark.parametrize(
    "query, message",
    [
        ("bucket=week", 'bucket: "week" is not a valid choice.'),
        ("since=yesterday", "since: Datetime has wrong format."),
        # RFC 3339 (OpenAPI's date-time): seconds and an offset are part of it.
        ("since=2026-11-21T00:00", "since: Datetime has wrong format."),
        (
            "since=2026-11-21T00:00:00Z&until=2026-11-20T00:00:00Z",
            "until: must be later than since",
        ),
    ],
)
def test_a_bad_query_is_a_400_naming_the_parameter(client, data, query, message):
    error = error_of(get(client, f"/api/usage/?{query}", key=data["alice"]), 400)
    assert error["message"].startswith(message)
    assert error["type"] == "invalid_request_error"


def test_without_a_key_or_a_staff_session_it_is_refused(client, data, settings):
    settings.CHATMODELS_ALLOW_ANONYMOUS = True  # serving may be open; usage is not
    assert error_of(get(client, "/api/usage/"), 401)["code"] == "invalid_api_key"

    user = User.objects.create_user("someone", password="pw", is_staff=False)
    client.force_login(user)
    error_of(get(client, "/api/usage/"), 403)

    user.is_staff = True
    user.save()
    error_of(get(client, "/api/usage/"), 403)  # staff, but not allowed to view usage
    user.user_permissions.add(Permission.objects.get(codename="view_usagebucket"))
    assert len(rows(get(client, "/api/usage/"))) == 6


def test_queries_per_listing_are_fixed(client, admin_client, data, django_assert_num_queries):
    for hour in range(40):
        bucket(RegisteredModel.objects.get(name="echo"), None, 100 + hour)

    with django_assert_num_queries(3):  # the key, the count, the page
        rows(get(client, "/api/usage/?bucket=day", key=data["alice"]))
    with django_assert_num_queries(4):  # the session, the user, the count, the page
        assert len(rows(admin_client.get("/api/usage/"))) == 46
