"""The per-process cache of loaded versions, keyed by the immutable (version id, digest).

A version is loaded once per process (its package read from storage, its digest checked, its
`load_context` run once) and shared by every thread. Which version an alias or "latest" means
is never cached here: the pipeline resolves it on every request.
"""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings

from chatmodels import metrics, packaging
from chatmodels.exceptions import ChatModelsError, ModelLoadError
from chatmodels.models import package_storage
from chatmodels.selectors import ResolvedVersion

logger = logging.getLogger(__name__)

_loaded: dict[tuple[int, str], packaging.LoadedModel] = {}
_loading_locks: dict[tuple[int, str], threading.Lock] = {}
_registry_lock = threading.Lock()


def get_loaded_model(version: ResolvedVersion) -> packaging.LoadedModel:
    """The loaded model of `version`, loading it on first use (one loader per version)."""
    key = (version.id, version.digest)
    loaded = _loaded.get(key)
    if loaded is not None:
        return loaded
    with _registry_lock:
        lock = _loading_locks.setdefault(key, threading.Lock())
    with lock:
        loaded = _loaded.get(key)
        if loaded is None:
            loaded = _load(version)
            _loaded[key] = loaded
    return loaded


def _load(version: ResolvedVersion) -> packaging.LoadedModel:
    started = time.perf_counter()
    try:
        with package_storage().open(version.package, "rb") as package_file:
            data = package_file.read()
        loaded = packaging.open_package(
            data, expected_digest=version.digest, work_dir=settings.CHATMODELS_CACHE_DIR
        )
    except ChatModelsError as error:
        logger.error("cannot load %s: %s", version, error, exc_info=error.__cause__)
        raise ModelLoadError(f"model version {version} could not be loaded") from error
    except OSError as error:
        logger.error("cannot read the package of %s: %s", version, error)
        raise ModelLoadError(f"model version {version} could not be loaded") from error
    seconds = time.perf_counter() - started
    metrics.record_model_load(
        model=version.model_name, version=str(version.version), seconds=seconds
    )
    logger.info(
        "loaded %s", version, extra={"digest": version.digest, "load_ms": round(seconds * 1e3)}
    )
    return loaded


def clear_cache() -> None:
    """Forget every loaded model (tests, and operators reclaiming memory)."""
    with _registry_lock:
        _loaded.clear()
        _loading_locks.clear()
