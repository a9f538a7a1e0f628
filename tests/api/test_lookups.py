"""Keys and versions are remembered in each process for at most a second: a change made by
another process (written here with `QuerySet.update`, which no signal reports) is seen within
CHATMODELS_LOOKUP_CACHE_SECONDS; one made in this process (through the service layer) at once."""

from __future__ import annotations

import time

import pytest
from django.utils import timezone

from chatmodels import services
from chatmodels.models import ApiKey, ModelAlias, ModelVersion
from tests.api.calls import INVOCATIONS, completion_text, error_of, post
from tests.helpers import chat, make_key

pytestmark = pytest.mark.django_db

WINDOW = 0.3  # CHATMODELS_LOOKUP_CACHE_SECONDS in these tests


@pytest.fixture(autouse=True)
def short_window(settings):
    settings.CHATMODELS_LOOKUP_CACHE_SECONDS = WINDOW


def _after_the_window() -> None:
    time.sleep(WINDOW + 0.05)


def test_a_key_revoked_elsewhere_is_refused_once_the_window_has_passed(client, echo):
    record, raw = make_key(name="soon-revoked")
    assert post(client, INVOCATIONS, chat("hi"), key=raw).status_code == 200

    ApiKey.objects.filter(pk=record.pk).update(revoked_at=timezone.now())  # another process
    _after_the_window()

    assert error_of(post(client, INVOCATIONS, chat("hi"), key=raw), 401)["code"] == (
        "invalid_api_key"
    )


def test_a_key_revoked_through_the_service_is_refused_at_once(client, echo):
    record, raw = make_key(name="revoked-now")
    assert post(client, INVOCATIONS, chat("hi"), key=raw).status_code == 200

    services.revoke_api_key(key=record)

    assert error_of(post(client, INVOCATIONS, chat("hi"), key=raw), 401)["code"] == (
        "invalid_api_key"
    )


def test_an_alias_moved_elsewhere_is_followed_once_the_window_has_passed(client, echo, key):
    path = f"{INVOCATIONS}?alias=prod"
    assert completion_text(post(client, path, chat("hi"), key=key)) == "v1:hi"

    newest = ModelVersion.objects.get(model__name="echo", version=2)
    ModelAlias.objects.filter(model__name="echo", name="prod").update(version=newest)
    _after_the_window()

    assert completion_text(post(client, path, chat("hi"), key=key)) == "v2:hi"


def test_an_alias_moved_through_the_service_is_followed_at_once(client, echo, key):
    path = f"{INVOCATIONS}?alias=prod"
    assert completion_text(post(client, path, chat("hi"), key=key)) == "v1:hi"

    services.set_alias(name="echo", alias="prod", version=2)

    assert completion_text(post(client, path, chat("hi"), key=key)) == "v2:hi"


def test_a_changed_limit_is_applied_once_the_window_has_passed(client, echo):
    record, raw = make_key(name="limited-later")
    assert post(client, INVOCATIONS, chat("hi"), key=raw).status_code == 200

    ApiKey.objects.filter(pk=record.pk).update(requests_per_minute=1)
    _after_the_window()

    answers = [post(client, INVOCATIONS, chat("hi"), key=raw).status_code for _ in range(3)]
    assert answers[0] == 200 and 429 in answers


def test_unknown_keys_and_models_are_remembered_as_unknown(
    client, echo, key, django_assert_num_queries
):
    assert post(client, INVOCATIONS, chat("hi"), key="cm_not-a-key").status_code == 401
    assert post(client, "/v1/chat/completions", chat(model="nope"), key=key).status_code == 404

    # A client repeating them costs the database nothing within the window.
    with django_assert_num_queries(0):
        assert post(client, INVOCATIONS, chat("hi"), key="cm_not-a-key").status_code == 401
        not_found = post(client, "/v1/chat/completions", chat(model="nope"), key=key)
        assert error_of(not_found, 404)["code"] == "model_not_found"


def test_with_the_window_at_zero_every_request_asks_the_database(
    client, echo, key, settings, django_assert_num_queries
):
    settings.CHATMODELS_LOOKUP_CACHE_SECONDS = 0
    assert post(client, INVOCATIONS, chat("hi"), key=key).status_code == 200
    with django_assert_num_queries(2):  # the key, the version
        assert post(client, INVOCATIONS, chat("hi"), key=key).status_code == 200
