"""Settings for the test suite: the real settings with a throwaway secret and per-run file locations."""

import os
import tempfile

os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production")
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
os.environ.setdefault("LOG_FORMAT", "plain")
os.environ.setdefault("CHATMODELS_THROTTLE_RATE", "")
_RUN_DIR = tempfile.mkdtemp(prefix="chatmodels-test-")
os.environ.setdefault("CHATMODELS_PACKAGE_DIR", os.path.join(_RUN_DIR, "packages"))
os.environ.setdefault("CHATMODELS_CACHE_DIR", os.path.join(_RUN_DIR, "cache"))

from project.settings import *  # noqa: E402, F403

STORAGES["staticfiles"] = {  # noqa: F405
    "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
