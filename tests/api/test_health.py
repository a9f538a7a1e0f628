"""Health checks: `/health`, `/ready`, `/version`, open to every caller."""

from __future__ import annotations

import pytest

import chatmodels

pytestmark = pytest.mark.django_db


def test_health_ready_and_version_need_no_key(client):
    health = client.get("/health")
    ready = client.get("/ready")
    version = client.get("/version")

    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"database": "ok", "storage": "ok"}}
    assert version.status_code == 200
    assert version.json()["chatmodels"] == chatmodels.__version__
    assert {"python", "django"} <= set(version.json())
