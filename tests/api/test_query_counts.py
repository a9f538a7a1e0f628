"""Database queries per request: a small fixed number, however many models, versions and keys."""

from __future__ import annotations

import pytest

from chatmodels.models import ModelAlias, ModelTag, ModelVersion, RegisteredModel
from chatmodels.serving import lookups
from tests.api.calls import get, post, stream_events
from tests.helpers import chat, copy_version, make_key

pytestmark = pytest.mark.django_db

EXTRA = 30


def grow_registry_and_keys(echo: ModelVersion) -> None:
    """EXTRA more models (two versions, two aliases and a tag each), EXTRA more versions of
    echo with aliases on some, and EXTRA more keys, half of them limited to a few models."""
    models = []
    for index in range(EXTRA):
        model = RegisteredModel.objects.create(name=f"grown-{index:02d}")
        first, second = (copy_version(echo, model=model, number=n) for n in (1, 2))
        ModelAlias.objects.create(model=model, name="prod", version=second)
        ModelAlias.objects.create(model=model, name="canary", version=first)
        ModelTag.objects.create(model=model, key="team", value=f"team-{index}")
        models.append(model)
    for number in range(3, 3 + EXTRA):
        version = copy_version(echo, model=echo.model, number=number)
        if number % 5 == 0:
            ModelAlias.objects.create(model=echo.model, name=f"alias-{number}", version=version)
    for index in range(EXTRA):
        limited_to = ["echo", models[index].name] if index % 2 else []
        make_key(name=f"key-{index:02d}", models=limited_to)
    assert RegisteredModel.objects.count() == EXTRA + 1
    assert ModelVersion.objects.count() == 3 * EXTRA + 2


@pytest.fixture(autouse=True)
def long_lookup_window(settings):
    """What is counted is the steady state: a window long enough that a slow machine (a model
    worker starting) cannot let it lapse between two calls. Staleness: tests/api/test_lookups.py."""
    settings.CHATMODELS_LOOKUP_CACHE_SECONDS = 60


@pytest.fixture
def limited_key(echo) -> str:
    return make_key(name="echo-only", models=["echo"])[1]


def _invoke(client, key):
    return post(client, "/api/models/echo/invocations", chat("hi"), key=key)


def _invoke_version(client, key):
    return post(client, "/api/models/echo/invocations?version=1", chat("hi"), key=key)


def _invoke_alias(client, key):
    return post(client, "/api/models/echo/invocations?alias=prod", chat("hi"), key=key)


def _chat_completions(client, key):
    return post(client, "/v1/chat/completions", chat("hi", model="echo@prod"), key=key)


def _stream(client, key):
    response = post(client, "/v1/chat/completions", chat(model="echo", stream=True), key=key)
    assert stream_events(response)[-1] == "[DONE]"  # the whole stream, inside the count
    return response


INVOCATIONS = [_invoke, _invoke_version, _invoke_alias, _chat_completions, _stream]


def _assert_queries(django_assert_num_queries, expected: int, call, *, info: str) -> None:
    """`call` costs `expected` queries when nothing is remembered of keys and versions."""
    lookups.forget()
    with django_assert_num_queries(expected, info=info):
        response = call()
        assert response.status_code == 200, response.content


# The registry is grown once per test (it is the slow part), and every call is measured on
# both sides of the growth.


@pytest.mark.parametrize(("key_kind", "expected"), [("unlimited", 2), ("limited", 3)])
def test_an_invocation_costs_a_fixed_number_of_queries_however_large_the_registry(
    client, echo, key, limited_key, key_kind, expected, django_assert_num_queries
):
    raw = key if key_kind == "unlimited" else limited_key
    _invoke(client, raw)  # loads the model: the cache is per process, not per request
    for stage in ("small registry", "grown registry"):
        for invocation in INVOCATIONS:
            info = f"{invocation.__name__}, {key_kind} key, {stage}"
            _assert_queries(
                django_assert_num_queries,
                expected,
                lambda invocation=invocation: invocation(client, raw),
                info=info,
            )
            # The steady state: the key and the version were looked up a moment ago.
            with django_assert_num_queries(0, info=f"{info}, again"):
                assert invocation(client, raw).status_code == 200
        if stage == "small registry":
            grow_registry_and_keys(echo)


# Key lookup, then the listing's own queries (count, page, alias and tag prefetches...);
# a key limited to some models may cost one more.
LISTINGS = [
    ("/api/models/", 5, 5),
    ("/api/models/echo/", 4, 5),
    ("/api/models/echo/versions/", 5, 6),
    ("/api/models/echo/versions/1/", 4, 5),
    ("/v1/models", 4, 4),
    ("/v1/models/echo@prod", 2, 3),
]


def test_registry_listings_stay_flat_as_the_registry_grows(
    client, echo, key, limited_key, django_assert_num_queries
):
    for stage in ("small registry", "grown registry"):
        for path, unlimited, limited in LISTINGS:
            for raw, expected, kind in (
                (key, unlimited, "unlimited"),
                (limited_key, limited, "limited"),
            ):
                _assert_queries(
                    django_assert_num_queries,
                    expected,
                    lambda path=path, raw=raw: get(client, path, key=raw),
                    info=f"GET {path}, {kind} key, {stage}",
                )
        if stage == "small registry":
            grow_registry_and_keys(echo)


def test_listings_after_growth_still_show_everything(client, echo, key):
    grow_registry_and_keys(echo)

    models = get(client, "/api/models/", key=key).json()
    versions = get(client, "/api/models/echo/versions/", key=key).json()
    openai_models = get(client, "/v1/models", key=key).json()

    assert models["count"] == EXTRA + 1
    assert versions["count"] == EXTRA + 2
    assert versions["results"][0]["version"] == EXTRA + 2
    assert len(openai_models["data"]) == 3 * EXTRA + 2 + EXTRA // 5
