"""The middleware every request passes: request ids."""

from __future__ import annotations

import pytest

from tests.api.calls import INVOCATIONS, post

pytestmark = pytest.mark.django_db


def test_every_response_carries_a_request_id(client, echo, key):
    given = client.get("/health", HTTP_X_REQUEST_ID="lb-123")
    made = post(client, INVOCATIONS, key=key)

    assert given["X-Request-ID"] == "lb-123"
    assert len(made["X-Request-ID"]) == 32
