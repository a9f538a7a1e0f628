"""`POST /v1/responses` with stored state: the two hooks around the chat pipeline.

`continuation()` finds, before the request is read, the stored items it continues
(`previous_response_id` or `conversation`); `keep()` stores the response object once the answer
is made (`store`, true by default). Both ask the database in a thread (`lookups.in_thread`), so
the event loop never waits on it. A response is stored before the client is told about it (the
JSON answer, or a stream's last event), so the next request, on any process or host, finds it;
a stream whose client went away is stored as `cancelled` as its generator closes.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from django.http import StreamingHttpResponse
from django.http.response import HttpResponseBase

from chatmodels import responses_store
from chatmodels.responses_store import Continuation
from chatmodels.selectors import ApiKeyInfo
from chatmodels.serving import lookups
from chatmodels.serving.dialects.responses_answer import ResponsesDialect
from chatmodels.serving.dialects.responses_request import input_items, read_state

logger = logging.getLogger(__name__)


def _key_id(key: ApiKeyInfo | None) -> int | None:
    return key.id if key is not None else None


async def continuation(body: dict[str, Any], key: ApiKeyInfo | None) -> Continuation:
    """The stored items the request continues (none: no database work); 400/404 when it names
    a response or conversation this key does not have."""
    state = read_state(body)
    if state.previous_response_id is None and state.conversation_id is None:
        return Continuation()
    return await lookups.in_thread(
        lambda: responses_store.find_continuation(
            key_id=_key_id(key),
            previous_response_id=state.previous_response_id,
            conversation_id=state.conversation_id,
        )
    )


async def keep(
    answer: HttpResponseBase,
    dialect: ResponsesDialect,
    *,
    continued: Continuation,
    key: ApiKeyInfo | None,
    model_name: str,
) -> HttpResponseBase:
    """Store the response of `answer` unless the request said `store: false`: a JSON answer
    now, a stream when its last event is made (before it is sent)."""
    if not dialect.state.store:
        return answer
    store = _Store(dialect, continued=continued, key=key, model_name=model_name)
    if isinstance(answer, StreamingHttpResponse) and answer.is_async:
        # The front closes `_iterator` when the sending ends: the wrapper closes the pipeline's.
        answer.streaming_content = store.around(answer._iterator)  # type: ignore[attr-defined]
    elif answer.status_code == 200 and dialect.final is not None:
        await store.now(dialect.final)
    return answer


class _Store:
    def __init__(
        self,
        dialect: ResponsesDialect,
        *,
        continued: Continuation,
        key: ApiKeyInfo | None,
        model_name: str,
    ) -> None:
        self.dialect = dialect
        self.continued = continued
        self.key_id = _key_id(key)
        self.model_name = model_name
        self.done = False

    def _write(self, response: dict[str, Any]) -> None:
        responses_store.store_response(
            key_id=self.key_id,
            response=response,
            inputs=input_items(self.dialect.body),
            model_name=self.model_name,
            continuation=self.continued,
        )

    async def now(self, response: dict[str, Any]) -> None:
        self.done = True
        await lookups.in_thread(self._write, response)

    async def around(self, events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """The stream's events; the response is stored when its last event is made, before
        that event goes out."""
        try:
            async for chunk in events:
                if not self.done and self.dialect.final is not None:
                    await self.now(self.dialect.final)
                yield chunk
        finally:
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                await aclose()
            if not self.done:  # the client went away before the end: no one waits on this
                self.done = True
                try:
                    await lookups.in_thread(self._write, self.dialect.cancelled())
                except Exception:
                    logger.exception("the response of a stream cut short was not stored")
