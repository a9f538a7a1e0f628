"""The async twin of openai_proxy.py: forwards each request to an OpenAI-compatible upstream.

`predict` and `predict_stream` are coroutines, so a request waiting on the upstream holds no
thread: the server runs them on its per-process event loop, and one `httpx.AsyncClient` (one
connection pool) serves every request of the process. Register it like the standard-library one:

    python manage.py register_model proxy examples/openai_proxy_async.py:AsyncOpenAIProxyModel \\
        --model-config proxy.json

with `{"base_url": "http://localhost:11434/v1", "model": "llama3.2"}` in proxy.json (optional:
`"timeout"` in seconds, default 60). `base_url` and `api_key` fall back to the OPENAI_BASE_URL and
OPENAI_API_KEY environment variables of the model's worker process, which sees only the variables
the server's CHATMODELS_WORKER_ENV lists (`CHATMODELS_WORKER_ENV=OPENAI_API_KEY`). Prefer the
variable for the key: a model config is stored in the version.
"""

from __future__ import annotations

import contextlib
import json
import os

import httpx

from chatmodels import ChatChunk, ChatModel, ChatResponse

DEFAULT_BASE_URL = "https://api.openai.com/v1"
# ChatParams fields not sent as such: ours (an OpenAI server does not take them), and `extra`,
# whose keys are sent beside the others.
NOT_FORWARDED = {"custom_inputs", "top_k", "extra"}
# How much of an upstream error body goes into the error message.
ERROR_DETAIL_BYTES = 500


def upstream_params(params) -> dict:
    """The request parameters to send upstream: every typed field the client set (except ours),
    and every vendor key it sent (`params.extra`, e.g. `min_p`) as given.

    (Each example file stands alone: openai_proxy.py has the same function.)
    """
    body = {key: value for key, value in params.to_dict().items() if key not in NOT_FORWARDED}
    if params.max_completion_tokens is not None and params.max_tokens == (
        params.max_completion_tokens
    ):
        del body["max_tokens"]  # read from max_completion_tokens: send only what the client sent
    return {**(params.extra or {}), **body}


class AsyncOpenAIProxyModel(ChatModel):
    # No client in __init__: the instance is pickled at registration, before load_context runs.

    async def load_context(self, context) -> None:
        config = context.model_config
        self.base_url = (
            config.get("base_url") or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        ).rstrip("/")
        self.api_key = config.get("api_key") or os.environ.get("OPENAI_API_KEY", "")
        self.upstream_model = config.get("model", "gpt-4o-mini")
        self.timeout = float(config.get("timeout", 60))
        # Created on the serving event loop and shared by every request of this process. No cap
        # on connections, like the standard-library proxy: the server's capacity is the limit.
        self.client = httpx.AsyncClient(
            timeout=self.timeout, limits=httpx.Limits(max_connections=None)
        )

    async def predict(self, context, messages, params) -> ChatResponse:
        async with self._post(messages, params, stream=False) as response:
            return ChatResponse.from_dict(json.loads(await response.aread()))

    async def predict_stream(self, context, messages, params):
        # If the client goes away, the server closes or cancels this generator: leaving the
        # `async with` closes the upstream response (and its connection) at once.
        async with self._post(messages, params, stream=True) as response:
            # server-sent events: "data: {...}" lines, then "data: [DONE]"
            async for raw_line in response.aiter_lines():
                line = raw_line.strip()
                if not line.startswith("data:"):
                    continue
                data = line[len("data:") :].strip()
                if data == "[DONE]":
                    return
                yield ChatChunk.from_dict(json.loads(data))

    @contextlib.asynccontextmanager
    async def _post(self, messages, params, *, stream: bool):
        body = upstream_params(params)
        body.update(
            model=self.upstream_model,
            messages=[message.to_dict() for message in messages],
            stream=stream,
        )
        if stream:
            # The upstream's own token counts end its stream (a chunk with no choices): passed
            # on, so the server reports real usage, never a guess.
            body["stream_options"] = {"include_usage": True}
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        async with self.client.stream(
            "POST",
            f"{self.base_url}/chat/completions",
            content=json.dumps(body).encode(),
            headers=headers,
        ) as response:
            if not response.is_success:
                detail = await _head(response, ERROR_DETAIL_BYTES)
                raise RuntimeError(f"upstream answered HTTP {response.status_code}: {detail}")
            yield response


async def _head(response: httpx.Response, limit: int) -> str:
    """The first `limit` bytes of the body, without reading the rest."""
    data = b""
    async for part in response.aiter_bytes():
        data += part
        if len(data) >= limit:
            break
    return data[:limit].decode("utf-8", "replace")
