"""`OpenAICompatibleModel`: a chat model that forwards to any OpenAI-compatible upstream, no code.

    python manage.py register_model llama chatmodels.contrib:OpenAICompatibleModel \\
        --model-config upstream.json

with `upstream.json`:

    {"base_url": "http://localhost:11434/v1", "model": "llama3.2",
     "api_key_env": "UPSTREAM_API_KEY", "timeout": 600, "max_retries": 2,
     "fallback_base_urls": ["http://backup:11434/v1"]}

Only `base_url` and `model` are required. `api_key_env` names an environment variable of the
model's worker (the server passes a worker only the variables CHATMODELS_WORKER_ENV lists), so
the key is never stored in the version. Every request parameter the client sent is forwarded
(vendor keys too); streams are passed on chunk by chunk, ending with the upstream's own usage.

Upstream errors, as the client sees them: a 4xx is answered as the upstream said (401/403 as
502: they are about this model's credentials, not the client's); a 429 moves on to the next
fallback, and from the last one is answered 429 with its `Retry-After`; a refused connection or
a 5xx is retried (`max_retries` times, with backoff), then the next fallback is tried, and in
the end answered 502; a timeout moves on to the next fallback, then answers 504. A stream is
only retried before its first chunk has been passed on.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import orjson

from chatmodels.base import ChatModel, ModelContext
from chatmodels.types import ChatChunk, ChatMessage, ChatParams, ChatResponse
from chatmodels.upstream import UpstreamError

logger = logging.getLogger("chatmodels.contrib")

# ChatParams fields that are ours (an OpenAI server refuses them) or sent another way.
NOT_FORWARDED = frozenset({"custom_inputs", "extra", "stream"})
RETRIED_STATUSES = frozenset({500, 502, 503, 504})
ERROR_DETAIL_BYTES = 2000
BACKOFF_BASE, BACKOFF_MAX = 0.25, 4.0  # seconds: 0.25, 0.5, 1, 2, 4 (each ±25%)
CONFIG_KEYS = frozenset(
    {"base_url", "model", "api_key_env", "timeout", "max_retries", "fallback_base_urls"}
)


class OpenAICompatibleModel(ChatModel):
    """Forwards each chat request to an OpenAI-compatible `/chat/completions` (see the module)."""

    def load_context(self, context: ModelContext) -> None:
        config = _checked(context.model_config)
        self.urls = [
            url.rstrip("/") + "/chat/completions"
            for url in [config["base_url"], *config.get("fallback_base_urls", [])]
        ]
        self.upstream_model = config["model"]
        self.timeout = float(config.get("timeout", 600))
        self.max_retries = int(config.get("max_retries", 2))
        self.headers = {"Content-Type": "application/json"}
        key_variable = config.get("api_key_env")
        if key_variable:
            key = os.environ.get(key_variable)
            if not key:
                raise ValueError(
                    f"model_config api_key_env: {key_variable} is not set in the model worker's "
                    "environment (list it in the server's CHATMODELS_WORKER_ENV)"
                )
            self.headers["Authorization"] = f"Bearer {key}"

    async def predict(  # type: ignore[override]  # async is allowed: the worker awaits it
        self, context: ModelContext, messages: list[ChatMessage], params: ChatParams
    ) -> ChatResponse:
        import aiohttp

        body = self._body(messages, params, stream=False)
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with self._first_answer(context, body, timeout) as response:
            try:
                data = await response.read()
            except (aiohttp.ClientError, asyncio.TimeoutError) as error:
                raise _broke_off(error) from None
        try:
            return ChatResponse.from_dict(orjson.loads(data))
        except (orjson.JSONDecodeError, ValueError) as error:
            raise UpstreamError(
                502, f"the upstream answered an invalid chat.completion: {error}"
            ) from None

    async def predict_stream(  # type: ignore[override]  # an async generator is allowed too
        self, context: ModelContext, messages: list[ChatMessage], params: ChatParams
    ) -> AsyncIterator[ChatChunk]:
        import aiohttp

        body = self._body(messages, params, stream=True)
        timeout = aiohttp.ClientTimeout(total=None, sock_read=self.timeout)
        # A client that goes away cancels this generator: leaving the `async with` closes the
        # upstream connection at once, and the upstream stops generating.
        async with self._first_answer(context, body, timeout) as response:
            try:
                async for line in response.content:
                    if not line.startswith(b"data:"):
                        continue  # `event:` lines, `:` keep-alive comments, blank separators
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        return
                    yield _chunk(data)
            except (aiohttp.ClientError, asyncio.TimeoutError) as error:
                raise _broke_off(error) from None

    def _body(self, messages: list[ChatMessage], params: ChatParams, *, stream: bool) -> bytes:
        body = {**(params.extra or {}), **_forwarded(params)}
        body["model"] = self.upstream_model
        body["messages"] = [message.to_dict() for message in messages]
        body["stream"] = stream
        if stream:
            # The upstream's own token counts end the stream: the server reports real usage.
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        return orjson.dumps(body)

    def _first_answer(self, context: ModelContext, body: bytes, timeout: Any) -> _FirstAnswer:
        return _FirstAnswer(self, context, body, timeout)


class _FirstAnswer:
    """`async with`: the first successful upstream response, through retries and fallbacks;
    UpstreamError when none answers."""

    def __init__(
        self, model: OpenAICompatibleModel, context: ModelContext, body: bytes, timeout: Any
    ) -> None:
        self.model, self.context, self.body, self.timeout = model, context, body, timeout
        self.response: Any = None

    async def __aenter__(self) -> Any:
        import aiohttp

        model, session = self.model, self.context.http
        failure: UpstreamError | None = None
        for url in model.urls:
            for attempt in range(model.max_retries + 1):
                if attempt:
                    await asyncio.sleep(_backoff(attempt))
                try:
                    response = await session.post(
                        url, data=self.body, headers=model.headers, timeout=self.timeout
                    )
                except aiohttp.ConnectionTimeoutError as error:
                    failure = _unreachable(url, error)
                    continue  # nothing was sent: safe to send again
                except asyncio.TimeoutError:  # read or total timeout: waited long enough here
                    failure = UpstreamError(504, "the upstream did not answer in time")
                    break
                except aiohttp.ClientConnectionError as error:
                    failure = _unreachable(url, error)
                    continue
                if response.status < 400:
                    self.response = response
                    return response
                failure = await _refusal(url, response)
                if response.status in RETRIED_STATUSES:
                    continue
                if response.status == 429:
                    break  # this upstream is saturated: the next fallback may not be
                raise failure  # the request itself is wrong: another upstream will say the same
        assert failure is not None
        raise failure

    async def __aexit__(self, *exc_info: Any) -> None:
        if self.response is None:
            return
        if exc_info[0] is None:
            self.response.release()  # read to the end: its connection goes back to the pool
        else:
            self.response.close()  # cut short (client gone, error): the connection is dropped


def _checked(config: dict[str, Any]) -> dict[str, Any]:
    """The model config, or ValueError naming the first wrong key (registration prints it)."""
    unknown = sorted(set(config) - CONFIG_KEYS)
    if unknown:
        raise ValueError(
            f"model_config: unknown key {unknown[0]!r} (expected some of "
            f"{', '.join(sorted(CONFIG_KEYS))})"
        )
    for key in ("base_url", "model"):
        if not isinstance(config.get(key), str) or not config[key]:
            raise ValueError(f"model_config {key}: required, a non-empty string")
    fallbacks = config.get("fallback_base_urls", [])
    if not isinstance(fallbacks, list):
        raise ValueError("model_config fallback_base_urls: expected a list of URLs")
    for index, url in enumerate([config["base_url"], *fallbacks]):
        where = "base_url" if index == 0 else f"fallback_base_urls[{index - 1}]"
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
            raise ValueError(f"model_config {where}: expected an http:// or https:// URL")
    timeout = config.get("timeout", 600)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise ValueError("model_config timeout: expected a positive number of seconds")
    retries = config.get("max_retries", 2)
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 10:
        raise ValueError("model_config max_retries: expected an integer from 0 to 10")
    key_variable = config.get("api_key_env")
    if key_variable is not None and not isinstance(key_variable, str):
        raise ValueError("model_config api_key_env: expected the name of an environment variable")
    return config


def _forwarded(params: ChatParams) -> dict[str, Any]:
    """Every typed parameter the client set, as OpenAI names it."""
    body = {key: value for key, value in params.to_dict().items() if key not in NOT_FORWARDED}
    if params.max_completion_tokens is not None and params.max_tokens == (
        params.max_completion_tokens
    ):
        del body["max_tokens"]  # read from max_completion_tokens: send only what the client sent
    return body


def _chunk(data: bytes) -> ChatChunk:
    try:
        return ChatChunk.from_dict(orjson.loads(data))
    except (orjson.JSONDecodeError, ValueError) as error:
        raise UpstreamError(502, f"the upstream streamed an invalid chunk: {error}") from None


def _backoff(attempt: int) -> float:
    return min(BACKOFF_BASE * 2 ** (attempt - 1), BACKOFF_MAX) * random.uniform(0.75, 1.25)


def _unreachable(url: str, error: Exception) -> UpstreamError:
    logger.warning("upstream %s did not answer: %s", _origin(url), error or type(error).__name__)
    return UpstreamError(502, "the upstream did not answer (connection failed)")


def _broke_off(error: BaseException) -> UpstreamError:
    if isinstance(error, asyncio.TimeoutError):
        return UpstreamError(504, "the upstream stopped answering (read timeout)")
    return UpstreamError(502, f"the upstream's answer broke off: {type(error).__name__}")


async def _refusal(url: str, response: Any) -> UpstreamError:
    """The UpstreamError for an upstream's 4xx/5xx answer (its body read, then released)."""
    status = response.status
    try:
        detail = await response.content.read(ERROR_DETAIL_BYTES)
    except Exception:  # the body of an error is a courtesy: the status says enough
        detail = b""
    finally:
        response.close()
    error: dict[str, Any] = {}
    try:
        parsed = orjson.loads(detail)
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
            error = parsed["error"]
    except orjson.JSONDecodeError:
        pass
    message = error.get("message") if isinstance(error.get("message"), str) else None
    message = message or detail.decode("utf-8", "replace").strip() or f"HTTP {status}"
    logger.warning("upstream %s answered %s: %s", _origin(url), status, message[:300])
    if status in (401, 403):
        return UpstreamError(502, f"the upstream refused this model's credentials ({status})")
    if status >= 500:
        code = 504 if status == 504 else 502
        return UpstreamError(code, f"the upstream failed (HTTP {status}): {message}")
    return UpstreamError(
        status,
        message,
        type=error.get("type"),
        code=error.get("code") if isinstance(error.get("code"), str) else None,
        param=error.get("param"),
        retry_after=_retry_after(response.headers.get("Retry-After")),
    )


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None  # an HTTP date: rare from an API, and no clock to trust across hosts


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
