"""Shared fixtures. Helpers that register models live in tests/helpers.py."""

import pytest


@pytest.fixture(autouse=True)
def _isolated_runtime_cache(settings, tmp_path):
    """Each test unpacks models into its own cache folder."""
    settings.CHATMODELS_CACHE_DIR = tmp_path / "cache"


@pytest.fixture(autouse=True)
def _no_usage_carried_over():
    """Usage one test counted is never written by another test, nor at exit elsewhere."""
    yield
    from chatmodels import usage

    usage.discard()


@pytest.fixture(autouse=True)
def _no_limit_leases_carried_over():
    """Leases one test took are never used by another test (key ids come back after a rollback)."""
    yield
    from chatmodels import limit_stores, limits

    limits.forget()
    limit_stores.reset_breakers()  # a store one test stopped is not skipped by the next


@pytest.fixture(autouse=True)
def _no_model_workers_carried_over():
    """Model workers one test started are stopped after it (their folders are in its tmp_path)."""
    yield
    from chatmodels.serving import runtime

    runtime.stop_workers()
