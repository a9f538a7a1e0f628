"""gunicorn settings, each from the environment (see docs/deploy.md for what to choose).

Request logs come from the app (one JSON line per request, on stderr); gunicorn's own access log
is off unless GUNICORN_ACCESSLOG is set ("-" for stdout).
"""

import os

proc_name = "chatmodels"
bind = os.environ.get("GUNICORN_BIND", f"0.0.0.0:{os.environ.get('PORT', '8000')}")
# Each worker process holds its own copy of every model it has loaded: workers cost memory.
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
# Threads let one worker keep serving while a model waits on a slow upstream LLM.
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
# Behind a load balancer, keep this above the balancer's idle timeout (else: sporadic 502s).
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "0"))
max_requests_jitter = int(os.environ.get("GUNICORN_MAX_REQUESTS_JITTER", "0"))
# In containers, a memory-backed folder (/dev/shm) keeps worker heartbeats off slow disks.
worker_tmp_dir = os.environ.get("GUNICORN_WORKER_TMP_DIR") or None
accesslog = os.environ.get("GUNICORN_ACCESSLOG") or None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOGLEVEL", "info")
