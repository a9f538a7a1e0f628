"""A custom model that calls an upstream LLM with the worker's pooled HTTP client (`context.http`).

For plain forwarding, register the built-in `chatmodels.contrib:OpenAICompatibleModel` instead
(retries, fallbacks, errors passed on, no code). Write your own when you change the request or
the answer on the way, as this one does: it adds a system prompt from its config.

    python manage.py register_model polite examples/upstream_model.py:PoliteModel \\
        --model-config polite.json

with `{"base_url": "http://localhost:11434/v1", "model": "llama3.2", "system": "Be polite."}` in
polite.json. `context.http` is an `aiohttp.ClientSession` made on the worker's event loop and
shared by all its requests: connections are reused, and a client that goes away cancels the
request, which closes its upstream connection. Sync methods use `context.http_sync` (urllib3).
"""

from __future__ import annotations

import json

from chatmodels import ChatChunk, ChatModel, ChatResponse, UpstreamError


class PoliteModel(ChatModel):
    def load_context(self, context) -> None:
        config = context.model_config
        self.url = config["base_url"].rstrip("/") + "/chat/completions"
        self.upstream_model = config["model"]
        self.system = {"role": "system", "content": config.get("system", "Be polite.")}

    def _body(self, messages, params, stream: bool) -> dict:
        body = params.to_dict()  # temperature, max_tokens, tools… as the client sent them
        body.pop("custom_inputs", None)  # ours, not the upstream's
        return {
            **body.pop("extra", {}),  # vendor keys the client sent (min_p…)
            **body,
            "model": self.upstream_model,
            "messages": [self.system, *(message.to_dict() for message in messages)],
            "stream": stream,
        }

    async def predict(self, context, messages, params) -> ChatResponse:
        async with context.http.post(self.url, json=self._body(messages, params, False)) as reply:
            if reply.status != 200:  # the client gets the upstream's status (429 stays 429)
                raise UpstreamError(reply.status, await reply.text())
            return ChatResponse.from_dict(await reply.json())

    async def predict_stream(self, context, messages, params):
        async with context.http.post(self.url, json=self._body(messages, params, True)) as reply:
            if reply.status != 200:
                raise UpstreamError(reply.status, await reply.text())
            async for line in reply.content:  # server-sent events, one line at a time
                if line.startswith(b"data:") and line[5:].strip() != b"[DONE]":
                    yield ChatChunk.from_dict(json.loads(line[5:]))
