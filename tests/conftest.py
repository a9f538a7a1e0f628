"""Shared fixtures. Helpers that register models live in tests/helpers.py."""

import pytest


@pytest.fixture(autouse=True)
def _isolated_runtime_cache(settings, tmp_path):
    """Each test unpacks models into its own cache folder."""
    settings.CHATMODELS_CACHE_DIR = tmp_path / "cache"
