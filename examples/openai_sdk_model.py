"""A model written on the `openai` SDK, for authors who prefer it to a raw HTTP client.

Give the SDK its aiohttp transport (`DefaultAioHttpClient()`, from `pip install "openai[aiohttp]"`
in the server's environment): on its default httpx transport the same model made 30 requests a
second at 256 concurrent upstream calls here, on aiohttp 471. One client per worker process,
made on its event loop at first use, serves every request.

    python manage.py register_model sdk examples/openai_sdk_model.py:OpenAISDKModel \\
        --model-config sdk.json

with `{"base_url": "http://localhost:11434/v1", "model": "llama3.2"}` in sdk.json; the key, if
the upstream needs one, from OPENAI_API_KEY (list it in the server's CHATMODELS_WORKER_ENV).
"""

from __future__ import annotations

import contextlib
import os

from chatmodels import ChatChunk, ChatModel, ChatResponse, UpstreamError


class OpenAISDKModel(ChatModel):
    def load_context(self, context) -> None:
        self.base_url = context.model_config["base_url"]
        self.upstream_model = context.model_config["model"]
        self.client = None  # made on the worker's event loop, at the first request

    def _client(self):
        if self.client is None:
            from openai import AsyncOpenAI, DefaultAioHttpClient

            self.client = AsyncOpenAI(
                base_url=self.base_url,
                api_key=os.environ.get("OPENAI_API_KEY", "none"),
                http_client=DefaultAioHttpClient(),
                max_retries=0,  # the client decides: a 429 reaches it with its Retry-After
            )
        return self.client

    def _request(self, messages, params) -> dict:
        body = params.to_dict()
        body.pop("custom_inputs", None)  # ours, not the upstream's
        extra = body.pop("extra", None)  # vendor keys the client sent (min_p…)
        return {
            **body,
            "extra_body": extra,
            "model": self.upstream_model,
            "messages": [message.to_dict() for message in messages],
        }

    async def predict(self, context, messages, params) -> ChatResponse:
        with upstream_errors():
            completion = await self._client().chat.completions.create(
                **self._request(messages, params)
            )
        return ChatResponse.from_dict(completion.model_dump(exclude_none=True))

    async def predict_stream(self, context, messages, params):
        request = {**self._request(messages, params), "stream": True}
        with upstream_errors():
            async for chunk in await self._client().chat.completions.create(**request):
                yield ChatChunk.from_dict(chunk.model_dump(exclude_none=True))


@contextlib.contextmanager
def upstream_errors():
    """The upstream's HTTP errors answered as it gave them (a 429 stays a 429)."""
    import openai

    try:
        yield
    except openai.APIStatusError as error:
        retry_after = error.response.headers.get("retry-after")
        raise UpstreamError(
            error.status_code,
            error.message,
            retry_after=float(retry_after) if retry_after and retry_after.isdigit() else None,
        ) from None
