"""A ChatModel that forwards every request to an OpenAI-compatible upstream (standard library only).

Register it with the upstream's details in a model config file, for example
`{"base_url": "http://localhost:11434/v1", "model": "llama3.2"}`:

    python manage.py register_model proxy examples/openai_proxy.py:OpenAIProxyModel \\
        --model-config proxy.json

`base_url` and `api_key` fall back to the OPENAI_BASE_URL and OPENAI_API_KEY environment variables
of the model's worker process, which sees only the variables the server's CHATMODELS_WORKER_ENV
lists (`CHATMODELS_WORKER_ENV=OPENAI_API_KEY`). Prefer the variable for the key: a model config is
stored in the version.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request

from chatmodels import ChatChunk, ChatModel, ChatResponse

DEFAULT_BASE_URL = "https://api.openai.com/v1"
# ChatParams fields not sent as such: ours (an OpenAI server does not take them), and `extra`,
# whose keys are sent beside the others.
NOT_FORWARDED = {"custom_inputs", "top_k", "extra"}


def upstream_params(params) -> dict:
    """The request parameters to send upstream: every typed field the client set (except ours),
    and every vendor key it sent (`params.extra`, e.g. `min_p`) as given.

    (Each example file stands alone, so the async proxy has the same function.)
    """
    body = {key: value for key, value in params.to_dict().items() if key not in NOT_FORWARDED}
    if params.max_completion_tokens is not None and params.max_tokens == (
        params.max_completion_tokens
    ):
        del body["max_tokens"]  # read from max_completion_tokens: send only what the client sent
    return {**(params.extra or {}), **body}


class OpenAIProxyModel(ChatModel):
    def load_context(self, context) -> None:
        config = context.model_config
        self.base_url = (
            config.get("base_url") or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        ).rstrip("/")
        self.api_key = config.get("api_key") or os.environ.get("OPENAI_API_KEY", "")
        self.upstream_model = config.get("model", "gpt-4o-mini")
        self.timeout = float(config.get("timeout", 60))

    def predict(self, context, messages, params) -> ChatResponse:
        with self._post(messages, params, stream=False) as response:
            return ChatResponse.from_dict(json.load(response))

    def predict_stream(self, context, messages, params):
        with self._post(messages, params, stream=True) as response:
            for (
                raw_line
            ) in response:  # server-sent events: "data: {...}" lines, then "data: [DONE]"
                line = raw_line.decode("utf-8").strip()
                if not line.startswith("data:"):
                    continue
                data = line[len("data:") :].strip()
                if data == "[DONE]":
                    return
                yield ChatChunk.from_dict(json.loads(data))

    def _post(self, messages, params, *, stream: bool):
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
        request = urllib.request.Request(
            f"{self.base_url}/chat/completions",
            data=json.dumps(body).encode(),
            headers=headers,
            method="POST",
        )
        try:
            return urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as error:
            detail = error.read(500).decode("utf-8", "replace")
            raise RuntimeError(f"upstream answered HTTP {error.code}: {detail}") from None
