"""Throttling: a 429 with Retry-After per key; health checks are never throttled."""

from __future__ import annotations

import pytest

from tests.api.calls import COMPLETIONS, INVOCATIONS, error_of, post
from tests.helpers import chat, make_key

pytestmark = pytest.mark.django_db


def test_throttling_answers_429_per_key(client, echo, key, settings):
    settings.CHATMODELS_THROTTLE_RATE = "2/min"
    other_key = make_key(name="other")[1]

    assert post(client, INVOCATIONS, key=key).status_code == 200
    assert post(client, COMPLETIONS, chat(model="echo"), key=key).status_code == 200
    throttled = post(client, INVOCATIONS, key=key)

    error = error_of(throttled, 429)
    assert error["type"] == "rate_limit_error"
    assert error["code"] == "rate_limit_exceeded"
    assert int(throttled["Retry-After"]) > 0
    # Another key has its own budget; health checks are never throttled.
    assert post(client, INVOCATIONS, key=other_key).status_code == 200
    assert client.get("/health").status_code == 200
