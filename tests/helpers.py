"""Small helpers the tests share: register a model, make a key, call the API."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from asgiref.sync import async_to_sync

from chatmodels import services
from chatmodels.base import ChatModel
from chatmodels.models import ApiKey, ModelAlias, ModelTag, ModelVersion, RegisteredModel
from chatmodels.serving import eventloop


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


def copy_version(source: ModelVersion, *, model: RegisteredModel, number: int) -> ModelVersion:
    """A version row sharing `source`'s package: quick bulk data (no packaging, no predict)."""
    fields = {name: getattr(source, name) for name in ModelVersion.CONTENT_FIELDS}
    fields.update(model_id=model.pk, version=number, package=source.package.name)
    return ModelVersion.objects.create(**fields)


def grow_registry(source: ModelVersion, *, models: int, versions: int) -> None:
    """`models` more models of `versions` versions each, with two aliases and a tag apiece, and
    `versions` more versions of `source`'s model: a bigger registry for query-count tests."""
    for index in range(models):
        model = RegisteredModel.objects.create(name=f"grown-{index:02d}")
        rows = [copy_version(source, model=model, number=n) for n in range(1, versions + 1)]
        ModelAlias.objects.create(model=model, name="prod", version=rows[-1])
        ModelAlias.objects.create(model=model, name="canary", version=rows[0])
        ModelTag.objects.create(model=model, key="team", value=f"team-{index}")
    first = ModelVersion.objects.next_number(model=source.model)
    for number in range(first, first + versions):
        copy_version(source, model=source.model, number=number)


def streamed(response) -> Iterator[bytes]:
    """The body parts of a streaming response as a client reads them, one at a time. The chat
    routes stream from an async generator: it is run on the process's event loop, as the
    server runs it, and closed when the reader is (`.close()`: what the server does when the
    client goes away)."""
    content = response.streaming_content
    if not hasattr(content, "__aiter__"):
        yield from content
        return
    try:
        while True:
            try:
                yield eventloop.run(content.__anext__())
            except StopAsyncIteration:
                return
    finally:
        eventloop.run(content.aclose())
        # Django's wrapper does not close the view's generator; the server's task drops it,
        # which closes it: the same, at once.
        eventloop.run(response._iterator.aclose())


def streamed_body(response) -> bytes:
    """The whole body of a streaming response, read as the server reads it: in one task, whose
    synchronous work (counting a key's tokens in the database) runs on this thread, as a
    request's does, so that it sees and is seen by the test's database transaction."""
    content = response.streaming_content
    if not hasattr(content, "__aiter__"):
        return b"".join(content)

    async def read() -> bytes:
        return b"".join([part async for part in content])

    return async_to_sync(read)()
