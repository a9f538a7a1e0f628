"""Django settings for chatmodels: every value comes from the environment (django-environ)."""

import contextlib
import sys
from pathlib import Path
from typing import Any

import environ

import chatmodels

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
# ENV_FILE names another file to read, or none when empty; variables already set always win.
ENV_FILE = env.str("ENV_FILE", default=str(BASE_DIR / ".env"))
if ENV_FILE:
    environ.Env.read_env(ENV_FILE, overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
# Needed to serve (it signs sessions and CSRF tokens), not to migrate or register: without one,
# commands work and the servers refuse to start (project/serving.py), as Django itself does.
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY and DEBUG:
    SECRET_KEY = "insecure-development-key-only-used-with-debug-on"
LOCAL_HOSTS = ["localhost", "127.0.0.1", "[::1]"]
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=LOCAL_HOSTS)
if DEBUG:
    # runserver's own addresses always work in development, whatever .env lists for production.
    ALLOWED_HOSTS += [host for host in LOCAL_HOSTS if host not in ALLOWED_HOSTS]
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "chatmodels",
]

MIDDLEWARE = [
    # First, so that every request is logged: HTTPS redirects and static files included.
    "chatmodels.api.middleware.RequestLogMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Django's own session, auth and messages middleware, skipped on API paths.
    "chatmodels.api.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "chatmodels.api.middleware.AuthenticationMiddleware",
    "chatmodels.api.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"
ASGI_APPLICATION = "project.asgi.application"
ASGI_APPLICATION = "project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DB_CONN_MAX_AGE", default=60))
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env.bool(
    "DB_POOL", default=True
):
    # Hundreds of request threads per worker share a few connections: a request borrows one
    # for its lookups and gives it back before the model runs (chatmodels/api/chat.py).
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # the pool keeps them instead
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": env.int("DB_POOL_SIZE", default=16),
        "timeout": env.float("DB_POOL_TIMEOUT", default=10.0),
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers (serving) go on while a writer (registration) commits.
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"].setdefault(
        "init_command", "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
    )
    DATABASES["default"]["OPTIONS"].setdefault("transaction_mode", "IMMEDIATE")
    DATABASES["default"]["OPTIONS"].setdefault("timeout", 20)
    _SQLITE_FILE = str(DATABASES["default"]["NAME"])
    if _SQLITE_FILE and _SQLITE_FILE != ":memory:" and not _SQLITE_FILE.startswith("file:"):
        # SQLite makes its file but not the folder: `migrate` on a fresh clone just works. If the
        # folder cannot be made, SQLite's own error says which file it could not open.
        with contextlib.suppress(OSError):
            Path(_SQLITE_FILE).parent.mkdir(parents=True, exist_ok=True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}
# django-environ lower-cases the query's KEY_PREFIX, TIMEOUT, … for Django's own Redis backend,
# where Django reads them upper-case only (`rediscache://host:6379/0?key_prefix=prod`).
for _option in ("key_prefix", "timeout", "version", "key_function"):
    if _option in CACHES["default"]:
        CACHES["default"][_option.upper()] = CACHES["default"].pop(_option)

# Model packages live in their own storage: local files, or S3-compatible when a bucket is set.
AWS_STORAGE_BUCKET_NAME = env.str("AWS_STORAGE_BUCKET_NAME", default="")
PACKAGE_STORAGE: dict[str, Any]
if AWS_STORAGE_BUCKET_NAME:
    PACKAGE_STORAGE = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": AWS_STORAGE_BUCKET_NAME,
            "endpoint_url": env.str("AWS_S3_ENDPOINT_URL", default="") or None,
            "region_name": env.str("AWS_S3_REGION_NAME", default="") or None,
            "access_key": env.str("AWS_ACCESS_KEY_ID", default="") or None,
            "secret_key": env.str("AWS_SECRET_ACCESS_KEY", default="") or None,
            "location": env.str("AWS_LOCATION", default="chatmodels"),
            "default_acl": None,
            "file_overwrite": False,
        },
    }
else:
    PACKAGE_STORAGE = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": env.path("CHATMODELS_PACKAGE_DIR", default=VAR_DIR / "packages")},
    }
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "packages": PACKAGE_STORAGE,
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
MEDIA_ROOT = VAR_DIR / "media"
STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "staticfiles")

# Where each process unpacks the versions it serves (keyed by digest, safe to share or delete).
CHATMODELS_CACHE_DIR = env.path("CHATMODELS_CACHE_DIR", default=VAR_DIR / "cache")
CHATMODELS_ALLOW_ANONYMOUS = env.bool("CHATMODELS_ALLOW_ANONYMOUS", default=False)
CHATMODELS_MAX_REQUEST_BYTES = env.int("CHATMODELS_MAX_REQUEST_BYTES", default=1024 * 1024)
# A request rate for every API request of each key (or anonymous client address), e.g.
# `600/min`, counted in the limits store (chatmodels/limits.py) shared by every worker and host;
# empty: none. Off by default: with the database store it would cost a write per request.
CHATMODELS_THROTTLE_RATE = env.str("CHATMODELS_THROTTLE_RATE", default="") or None
# Addresses or networks of the reverse proxies in front of the server: X-Forwarded-For is read
# only from these (the client is the last address in it that is not a trusted proxy); every
# other request's client is its peer address. Empty: X-Forwarded-For is never read.
CHATMODELS_TRUSTED_PROXIES = env.list("CHATMODELS_TRUSTED_PROXIES", default=[])
# Admin login attempts per minute from one client address, and for one username (0: no limit).
CHATMODELS_LOGIN_ATTEMPTS_PER_MINUTE = env.int("CHATMODELS_LOGIN_ATTEMPTS_PER_MINUTE", default=10)
DATA_UPLOAD_MAX_MEMORY_SIZE = CHATMODELS_MAX_REQUEST_BYTES
# Seconds a client has to send its request body once its headers are in (else 408), and to take
# each write of the answer (else the connection is closed: a stream nobody reads ends); 0: none.
CHATMODELS_BODY_TIMEOUT = env.float("CHATMODELS_BODY_TIMEOUT", default=30.0)
CHATMODELS_WRITE_TIMEOUT = env.float("CHATMODELS_WRITE_TIMEOUT", default=30.0)
# Capacity (scripts/server): each server process runs up to MAX_IN_FLIGHT chat requests at once
# (each a coroutine, not a thread); one past that waits up to CHATMODELS_QUEUE_TIMEOUT seconds for
# a free slot, then gets 503.
MAX_IN_FLIGHT = env.int("MAX_IN_FLIGHT", default=1024)
CHATMODELS_QUEUE_TIMEOUT = env.float("CHATMODELS_QUEUE_TIMEOUT", default=10.0)
# Slots of each process that one model without max_concurrency may not take: kept for the other
# models, so that a model that hangs cannot take all (default: MAX_IN_FLIGHT / 8, at most 64).
CHATMODELS_RESERVED_SLOTS = env.int(
    "CHATMODELS_RESERVED_SLOTS", default=min(64, MAX_IN_FLIGHT // 8)
)
# Seconds a model may take to answer (or, streaming, between two chunks) before a 504 (0: no
# limit). A stream silent for CHATMODELS_STREAM_KEEPALIVE seconds gets an SSE comment.
CHATMODELS_MODEL_TIMEOUT = env.float("CHATMODELS_MODEL_TIMEOUT", default=600.0) or None
CHATMODELS_STREAM_KEEPALIVE = env.float("CHATMODELS_STREAM_KEEPALIVE", default=15.0)
# The seconds in-flight requests get after SIGTERM (scripts/server passes it to the server):
# streams still running a little before it ends are cut with an error event, and counted.
CHATMODELS_GRACEFUL_TIMEOUT = env.float("GRACEFUL_TIMEOUT", default=30.0)
# How long each server process may serve a key, a model's versions and aliases as it last read
# them: a revoked key, a changed limit or an alias move is seen everywhere within this time.
CHATMODELS_LOOKUP_CACHE_SECONDS = env.float("CHATMODELS_LOOKUP_CACHE_SECONDS", default=1.0)
# Usage accounting (chatmodels/usage.py): counted in each process, written every
# CHATMODELS_USAGE_FLUSH_SECONDS (0: only when the process stops) as additive upserts;
# `manage.py prune_usage` deletes buckets older than CHATMODELS_USAGE_RETENTION_DAYS.
CHATMODELS_USAGE = env.bool("CHATMODELS_USAGE", default=True)
CHATMODELS_USAGE_FLUSH_SECONDS = env.float("CHATMODELS_USAGE_FLUSH_SECONDS", default=5.0)
CHATMODELS_USAGE_RETENTION_DAYS = env.int("CHATMODELS_USAGE_RETENTION_DAYS", default=90)
# Stored responses of /v1/responses (`store`, default true): `manage.py prune_responses` deletes
# those made more than CHATMODELS_RESPONSES_RETENTION_DAYS days ago (30, as OpenAI keeps them).
CHATMODELS_RESPONSES_RETENTION_DAYS = env.int("CHATMODELS_RESPONSES_RETENTION_DAYS", default=30)
# Per-key limits (chatmodels/limits.py): a worker gives back the leases of a key idle for this
# many seconds, and pays the tokens it owes (0: only at the next request and when it stops).
CHATMODELS_LIMITS_SETTLE_SECONDS = env.float("CHATMODELS_LIMITS_SETTLE_SECONDS", default=1.0)
# A key's token limits reserve its request's max_tokens (this many when it sends none) before
# the model runs, so concurrent requests overspend a limit by at most one reservation.
CHATMODELS_TOKEN_RESERVATION = env.int("CHATMODELS_TOKEN_RESERVATION", default=1024)
# The limits store must answer within CHATMODELS_LIMITS_TIMEOUT seconds; if it does not (or
# failed 3 times in a row within the last CHATMODELS_LIMITS_RETRY_SECONDS: not asked), requests
# of keys with limits get 503 limits_unavailable, or are let through uncounted with
# CHATMODELS_LIMITS_FAIL_OPEN. Keys without limits never ask it.
CHATMODELS_LIMITS_TIMEOUT = env.float("CHATMODELS_LIMITS_TIMEOUT", default=0.5)
CHATMODELS_LIMITS_RETRY_SECONDS = env.float("CHATMODELS_LIMITS_RETRY_SECONDS", default=2.0)
CHATMODELS_LIMITS_FAIL_OPEN = env.bool("CHATMODELS_LIMITS_FAIL_OPEN", default=False)

# Model workers (chatmodels/serving/workers): each version's code runs in processes of its own.
# Where the gateway writes each version's package for its workers, and their private folders
# (empty: CHATMODELS_CACHE_DIR/workers).
CHATMODELS_WORKER_DIR = env.str("CHATMODELS_WORKER_DIR", default="") or None
# Names of environment variables a worker may see besides PATH, HOME, locale and Python's own
# (e.g. an upstream API key); SECRET_KEY, DATABASE_URL, CACHE_URL, REDIS_URL, AWS_* and DJANGO_*
# are never passed, even when listed.
CHATMODELS_WORKER_ENV = env.list("CHATMODELS_WORKER_ENV", default=[])
# Seconds a worker with no request in flight is kept before it is stopped.
CHATMODELS_WORKER_IDLE_SECONDS = env.float("CHATMODELS_WORKER_IDLE_SECONDS", default=900.0)
# Seconds a worker has to end a request it was told to stop (timeout, client gone) or to exit
# when stopped, before it is killed and replaced.
CHATMODELS_WORKER_GRACE_SECONDS = env.float("CHATMODELS_WORKER_GRACE_SECONDS", default=5.0)
# This many crashes of a version's workers within CHATMODELS_WORKER_CRASH_WINDOW seconds make
# it unavailable (503, no new process) until it is restarted.
CHATMODELS_WORKER_CRASH_LIMIT = env.int("CHATMODELS_WORKER_CRASH_LIMIT", default=5)
CHATMODELS_WORKER_CRASH_WINDOW = env.float("CHATMODELS_WORKER_CRASH_WINDOW", default=60.0)
# Seconds a version that failed to load is answered with that failure before it is tried again.
CHATMODELS_WORKER_LOAD_RETRY_SECONDS = env.float(
    "CHATMODELS_WORKER_LOAD_RETRY_SECONDS", default=10.0
)
# Seconds a worker may take to load its version (load_context included) before it is killed.
CHATMODELS_WORKER_START_SECONDS = env.float("CHATMODELS_WORKER_START_SECONDS", default=300.0)
# Confine each worker's file access with Landlock (Linux >= 5.13; a warning where missing): it
# reads only Python, its packages and the system's folders, and writes only its own folders.
CHATMODELS_WORKER_LANDLOCK = env.bool("CHATMODELS_WORKER_LANDLOCK", default=True)
# Folders every model may read and write besides its own (e.g. a cache of model weights).
CHATMODELS_WORKER_PATHS = env.list("CHATMODELS_WORKER_PATHS", default=[])
# The largest message between the gateway and a worker: a bigger answer is invalid output.
CHATMODELS_WORKER_MAX_FRAME_BYTES = env.int(
    "CHATMODELS_WORKER_MAX_FRAME_BYTES", default=16 * 1024 * 1024
)

# Observability. Metrics: GET /metrics, open from this host, to keys with the
# metrics permission, or to all with CHATMODELS_METRICS_PUBLIC. scripts/server sets
# PROMETHEUS_MULTIPROC_DIR so that every worker process is counted.
CHATMODELS_METRICS = env.bool("CHATMODELS_METRICS", default=True)
CHATMODELS_METRICS_PUBLIC = env.bool("CHATMODELS_METRICS_PUBLIC", default=False)
PROMETHEUS_MULTIPROC_DIR = env.str("PROMETHEUS_MULTIPROC_DIR", default="")
# Tracing is on when an OTLP endpoint is named (the exporter reads the OTEL_* variables itself).
CHATMODELS_TRACING = bool(
    env.str("OTEL_EXPORTER_OTLP_ENDPOINT", default="")
    or env.str("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", default="")
)
OTEL_SERVICE_NAME = env.str("OTEL_SERVICE_NAME", default="chatmodels")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["chatmodels.api.auth.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["chatmodels.api.auth.HasApiKey"],
    "DEFAULT_THROTTLE_CLASSES": ["chatmodels.api.throttling.ApiKeyRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "chatmodels.api.negotiation.JSONOnlyNegotiation",
    "DEFAULT_PAGINATION_CLASS": "chatmodels.api.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "chatmodels.api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "chatmodels.api.schema.ChatModelsAutoSchema",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "chatmodels API",
    "DESCRIPTION": "Registry and OpenAI-compatible serving gateway for Python chat models.",
    "VERSION": chatmodels.__version__,
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "OAS_VERSION": "3.1.0",
    # Swagger UI's files come from the sidecar package: the docs work with no internet access.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True
# Dates and times as `2026-11-24 19:40` on every admin page (project/formats/en/formats.py).
FORMAT_MODULE_PATH = "project.formats"

# Production safety: on whenever DEBUG is off, each one overridable from the environment.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^health$", r"^ready$", r"^metrics$"]
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
# For people where people read it (DEBUG, or a terminal); JSON lines for log shippers otherwise.
LOG_FORMAT = env.str("LOG_FORMAT", default="plain" if DEBUG or sys.stderr.isatty() else "json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "chatmodels.logging.JsonFormatter"},
        "plain": {"()": "chatmodels.logging.PlainFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "chatmodels": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "django": {"handlers": ["console"], "level": "WARNING", "propagate": False},
        # A 4xx is the client's mistake, already one request line (with its status) above: no
        # second "Bad Request: …" warning. 5xx answers and unhandled errors are still logged.
        "django.request": {"handlers": ["console"], "level": "ERROR", "propagate": False},
        # runserver's own line per 4xx repeats that request line (with its socket's repr).
        "django.server": {"handlers": ["console"], "level": "ERROR", "propagate": False},
    },
}
