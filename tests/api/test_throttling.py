"""Throttling: a 429 with Retry-After per key; health checks are never throttled."""

from __future__ import annotations

import json

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


def _anonymous(client, forwarded_for: str, peer: str = "203.0.113.7"):
    return client.post(
        INVOCATIONS,
        data=json.dumps(chat()),
        content_type="application/json",
        HTTP_X_FORWARDED_FOR=forwarded_for,
        REMOTE_ADDR=peer,
    )


def test_a_spoofed_x_forwarded_for_does_not_escape_the_throttle(client, echo, settings):
    settings.CHATMODELS_ALLOW_ANONYMOUS = True
    settings.CHATMODELS_THROTTLE_RATE = "2/min"

    # A new made-up address on each request: all from the same peer, which is no proxy.
    statuses = [_anonymous(client, f"198.51.100.{n}").status_code for n in range(5)]

    assert statuses == [200, 200, 429, 429, 429]


def test_x_forwarded_for_is_read_from_trusted_proxies_only(client, echo, settings):
    settings.CHATMODELS_ALLOW_ANONYMOUS = True
    settings.CHATMODELS_THROTTLE_RATE = "2/min"
    settings.CHATMODELS_TRUSTED_PROXIES = ["10.0.0.0/8"]
    proxy = "10.1.2.3"

    # Behind the proxy each client has its own count, whatever it wrote before the proxy's
    # own entry (the proxy appends the address it saw: the last untrusted one is the client).
    for client_address in ("192.0.2.1", "192.0.2.2"):
        for _ in range(2):
            chain = f"1.1.1.1, {client_address}"
            assert _anonymous(client, chain, peer=proxy).status_code == 200
    assert _anonymous(client, "1.1.1.1, 192.0.2.1", peer=proxy).status_code == 429
    # The same header from a peer that is not a trusted proxy is ignored: its own address counts.
    assert _anonymous(client, "192.0.2.9", peer="192.0.2.50").status_code == 200
    assert _anonymous(client, "192.0.2.10", peer="192.0.2.50").status_code == 200
    assert _anonymous(client, "192.0.2.11", peer="192.0.2.50").status_code == 429
