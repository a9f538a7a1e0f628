"""Small helpers the tests share: register a model, make a key, call the API."""

from __future__ import annotations

from typing import Any

from chatmodels import services
from chatmodels.base import ChatModel
from chatmodels.models import ApiKey, ModelVersion


def register(
    *,
    name: str = "echo",
    model: ChatModel | type[ChatModel] | str,
    aliases: list[str] | tuple[str, ...] = (),
    **options: Any,
) -> ModelVersion:
    """Register through the real service (validation, package, storage, rows)."""
    return services.register_model(name, model, aliases=aliases, **options)


def make_key(*, name: str = "test", models: list[str] | tuple[str, ...] = ()) -> tuple[ApiKey, str]:
    """An API key and its raw value."""
    return services.create_api_key(name=name, models=models)


def auth(raw_key: str) -> dict[str, str]:
    """Headers for Django's test client."""
    return {"HTTP_AUTHORIZATION": f"Bearer {raw_key}"}


def chat(text: str = "hello", **params: Any) -> dict[str, Any]:
    """An OpenAI chat request body with one user message."""
    return {"messages": [{"role": "user", "content": text}], **params}
