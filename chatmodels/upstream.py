"""What a model that calls an upstream over HTTP gets: pooled clients, and an error to answer with.

`ModelContext.http` is one `aiohttp.ClientSession` per model worker process, made on the worker's
event loop the first time an async method asks for it: connections are kept alive and reused by
every request of the process, and a request that ends (client gone, timeout) cancels its task,
which closes the connection it was reading. `ModelContext.http_sync` is its twin for sync
methods, a `urllib3.PoolManager` (thread-safe, pooled per host).

aiohttp, not httpx: at 256 concurrent requests to an upstream that answers after 500 ms,
httpx's `AsyncClient` made 30 requests a second here and aiohttp 471 (the `openai` SDK uses httpx
unless given `DefaultAioHttpClient()`).

`UpstreamError` lets a model answer what its upstream answered: a 429 stays a 429 with its
`Retry-After`, a 400 names the upstream's parameter; anything else a model raises is a 500.
Django-free, like the rest of what a model imports.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import aiohttp
    import urllib3

# Client defaults; a model's config may set `timeout` (seconds to wait for each read, and the
# whole of a non-streamed answer) and `connect_timeout`.
DEFAULT_TIMEOUT = 600.0
DEFAULT_CONNECT_TIMEOUT = 10.0
# Idle connections kept per host by the sync twin (the async client keeps every idle one).
SYNC_POOL_SIZE = 64

# The statuses a model may answer through UpstreamError. 401 and 403 are not among them: they
# would tell the client its own key is wrong when it is the model's upstream credentials.
PASSED_THROUGH = frozenset({400, 404, 408, 409, 413, 422, 429, 500, 502, 503, 504})


class UpstreamError(Exception):
    """Raise this from `predict`/`predict_stream` to answer the client an HTTP error of your
    upstream's: `status` (4xx or 5xx), its message, OpenAI's `type`/`code`/`param` if the
    upstream gave them, and `retry_after` (seconds, sent as `Retry-After`). A status the gateway
    does not pass on (401, 403, anything unusual) is answered as 502."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.retry_after = retry_after

    def to_dict(self) -> dict[str, Any]:
        """What crosses to the gateway: only plain, bounded values."""
        return {
            "status": self.status if self.status in PASSED_THROUGH else 502,
            "type": short_text(self.type),
            "code": short_text(self.code),
            "param": short_text(self.param),
            "retry_after": _seconds(self.retry_after),
        }


def short_text(value: Any) -> str | None:
    """A non-empty string cut to 100 characters, else None: what an error field may carry."""
    return value[:100] if isinstance(value, str) and value else None


def _seconds(value: Any) -> int | None:
    """A Retry-After in whole seconds (rounded up), or None for anything that is not one."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return max(0, min(math.ceil(value), 86_400))


def timeouts(config: dict[str, Any]) -> tuple[float, float]:
    """(read timeout, connect timeout) in seconds from a model's config."""
    return (
        float(config.get("timeout") or DEFAULT_TIMEOUT),
        float(config.get("connect_timeout") or DEFAULT_CONNECT_TIMEOUT),
    )


def new_session(config: dict[str, Any]) -> aiohttp.ClientSession:
    """The worker's async client: call from a coroutine on the worker's event loop."""
    import aiohttp

    read, connect = timeouts(config)
    return aiohttp.ClientSession(
        # No cap on connections: the model's max_concurrency is the limit. DNS answers cached.
        connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=30),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect, sock_read=read),
        # No cookie jar: one model serves every client; nothing an upstream sets is shared.
        cookie_jar=aiohttp.DummyCookieJar(),
    )


def new_pool(config: dict[str, Any]) -> urllib3.PoolManager:
    """The sync twin: safe to share between the worker's threads."""
    import urllib3

    read, connect = timeouts(config)
    return urllib3.PoolManager(
        maxsize=SYNC_POOL_SIZE,
        block=False,
        retries=False,  # a model decides what to retry
        timeout=urllib3.Timeout(connect=connect, read=read),
    )
