"""Settings for the test suite: the real settings, a throwaway secret, per-run file locations."""

import os
import tempfile

os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production")
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
os.environ.setdefault("LOG_FORMAT", "plain")
os.environ.setdefault("CHATMODELS_THROTTLE_RATE", "")
# Usage is written when a test calls usage.flush(), never by a thread behind its back.
os.environ.setdefault("CHATMODELS_USAGE_FLUSH_SECONDS", "0")
# Limit leases likewise: settled when a test calls limits.settle().
os.environ.setdefault("CHATMODELS_LIMITS_SETTLE_SECONDS", "0")
# One folder per test process (each xdist worker has its own); a process that a test starts
# (tests/test_commands.py) finds its test process's folder in the environment and shares it.
_RUN_DIR_VARIABLE = "CHATMODELS_TEST_RUN_DIR_" + os.environ.get("PYTEST_XDIST_WORKER", "main")
_RUN_DIR = os.environ.get(_RUN_DIR_VARIABLE) or tempfile.mkdtemp(prefix="chatmodels-test-")
os.environ[_RUN_DIR_VARIABLE] = _RUN_DIR

from project.settings import *  # noqa: E402, F403

# Never a developer's own folders (from `.env`), whatever the environment says.
if STORAGES["packages"]["BACKEND"].endswith("FileSystemStorage"):  # noqa: F405
    STORAGES["packages"]["OPTIONS"]["location"] = os.path.join(_RUN_DIR, "packages")  # noqa: F405
CHATMODELS_CACHE_DIR = os.path.join(_RUN_DIR, "cache")
STORAGES["staticfiles"] = {  # noqa: F405
    "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STATIC_ROOT = os.path.join(_RUN_DIR, "static")  # exists, so WhiteNoise does not warn per request
os.makedirs(STATIC_ROOT, exist_ok=True)

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A file, not pytest-django's in-memory default, so that tests can start processes
    # (`manage.py register_model`) that share the test database.
    DATABASES["default"]["TEST"] = {"NAME": os.path.join(_RUN_DIR, "test.sqlite3")}  # noqa: F405

# A process started by a test runs against that test's database (SQLite file or PostgreSQL).
if os.environ.get("CHATMODELS_TEST_DATABASE_NAME"):
    DATABASES["default"]["NAME"] = os.environ["CHATMODELS_TEST_DATABASE_NAME"]  # noqa: F405
