"""Fixtures of the HTTP API tests: a clean process state, a registered echo model, a key."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from chatmodels.serving import runtime
from tests.helpers import make_key, register
from tests.sample_models import PrefixModel


@pytest.fixture(autouse=True)
def _fresh_process_state():
    """No loaded model and no throttle count carried over from another test."""
    runtime.stop_workers()
    cache.clear()
    yield
    runtime.stop_workers()
    cache.clear()


@pytest.fixture
def echo(db):
    """echo/1 ("v1:" prefix, alias prod) and echo/2 ("v2:" prefix, the latest)."""
    register(name="echo", model=PrefixModel("v1:"), aliases=["prod"])
    return register(name="echo", model=PrefixModel("v2:"))


@pytest.fixture
def key(db) -> str:
    """The raw value of a key that may call every model."""
    return make_key(name="everything")[1]
