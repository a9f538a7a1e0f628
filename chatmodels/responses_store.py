"""The Responses API's state: stored responses, conversations and their items (reads and writes).

Everything here is owned by the API key that made it: each function takes the caller's key id
(`None` for calls without a key, which then share one owner) and answers "not found" for what
another key made. Items are kept in threads (`ItemThread`): a chain of responses appends to one
thread, so that continuing it reads one range of rows whatever its length, in a fixed number of
queries. The API views, the chat view's hooks (`serving/stored_responses.py`), the admin and
`manage.py prune_responses` all call these functions.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import F, Max, QuerySet
from django.utils import timezone

from chatmodels.exceptions import (
    ConversationNotFound,
    InvalidRequest,
    ItemNotFound,
    PreviousResponseNotFound,
    ResponseNotFound,
)
from chatmodels.fields import describe
from chatmodels.models import Conversation, ItemThread, StoredItem, StoredResponse

# What ends a response well enough for its items to join a conversation (OpenAI adds them
# "after this response completes").
FINISHED = frozenset({"completed", "incomplete"})
MAX_LIST_LIMIT = 100
DEFAULT_LIST_LIMIT = 20
MAX_ITEM_ID = 100  # StoredItem.item_id's length
MAX_ITEMS_PER_CALL = 20  # items added to a conversation in one request, as OpenAI
# Metadata as OpenAI takes it: at most 16 pairs of strings, keys up to 64 characters, values 512.
MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 512

_ITEM_ID_PREFIXES = {
    "message": "msg",
    "function_call": "fc",
    "function_call_output": "fco",
    "reasoning": "rs",
}


def new_id(prefix: str) -> str:
    return f"{prefix}_{os.urandom(24).hex()}"


# ---------------------------------------------------------------------------------------------
# Items as the API lists them


def stored_item(item: dict[str, Any]) -> dict[str, Any]:
    """An input item (already checked by `ChatTranslation`) as the API lists it: with an `id`
    (the client's, when it gave a usable one) and a `status`, a message's content as a list of
    parts."""
    kind = item.get("type", "message")
    stored = {**item, "type": kind}
    given = item.get("id")
    if not isinstance(given, str) or not 0 < len(given) <= MAX_ITEM_ID:
        stored["id"] = new_id(_ITEM_ID_PREFIXES.get(kind, "item"))
    if kind in ("message", "function_call", "function_call_output"):
        stored.setdefault("status", "completed")
    if kind == "message":
        stored["content"] = _content_parts(item["role"], item["content"])
    return stored


def storable(value: Any) -> Any:
    """`value` with every NUL character made U+FFFD: PostgreSQL's JSON cannot hold NUL, and a
    response must not be lost for one (SQLite stores the same, so both databases agree)."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if isinstance(value, dict):
        return {storable(key): storable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [storable(item) for item in value]
    return value


def _content_parts(role: str, content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        if role == "assistant":
            return [{"type": "output_text", "text": content, "annotations": [], "logprobs": []}]
        return [{"type": "input_text", "text": content}]
    parts = []
    for part in content:
        if part.get("type") == "output_text":
            part = {"annotations": [], "logprobs": [], **part}
        parts.append(part)
    return parts


# ---------------------------------------------------------------------------------------------
# What a request continues


@dataclass(frozen=True)
class Continuation:
    """The stored items a request continues: `items` are positions [0, end) of `thread_id`
    (a previous response's thread, or a conversation's). Empty when it continues nothing."""

    thread_id: int | None = None
    end: int = 0
    conversation_id: str | None = None
    items: list[dict[str, Any]] = field(default_factory=list)
    # The thread is a conversation's: a response continuing one of its responses by
    # previous_response_id must not add to it (it branches).
    in_conversation: bool = False


def find_continuation(
    *, key_id: int | None, previous_response_id: str | None, conversation_id: str | None
) -> Continuation:
    """The items a new response sees before its input: two queries, whatever the length."""
    if previous_response_id is not None:
        found = (
            StoredResponse.objects.filter(response_id=previous_response_id, api_key=key_id)
            .values_list("thread_id", "end", "thread__conversation")
            .first()
        )
        if found is None:
            raise PreviousResponseNotFound(
                f"Previous response with id '{previous_response_id}' not found.",
                param="previous_response_id",
            )
        thread_id, end, conversation = found
        items = _items_before(thread_id, end)
        return Continuation(thread_id, end, None, items, in_conversation=conversation is not None)
    if conversation_id is not None:
        conversation = (
            Conversation.objects.filter(conversation_id=conversation_id, api_key=key_id)
            .values_list("thread_id", "thread__length")
            .first()
        )
        if conversation is None:
            raise ConversationNotFound(
                f"Conversation with id '{conversation_id}' not found.", param="conversation"
            )
        thread_id, end = conversation
        return Continuation(thread_id, end, conversation_id, _items_before(thread_id, end))
    return Continuation()


def _items_before(thread_id: int, end: int) -> list[dict[str, Any]]:
    rows = StoredItem.objects.filter(thread_id=thread_id, position__lt=end).order_by("position")
    return list(rows.values_list("item", flat=True))


# ---------------------------------------------------------------------------------------------
# Storing a response


@transaction.atomic
def store_response(
    *,
    key_id: int | None,
    response: dict[str, Any],
    inputs: Sequence[dict[str, Any]],
    model_name: str,
    continuation: Continuation = Continuation(),  # frozen: never changed
) -> StoredResponse:
    """Keep `response` (its input items `inputs`, checked already) for its key, in one
    transaction and a fixed number of queries, whatever the length of what it continues.

    A response continuing a chain from its last response appends to the chain's thread; from
    an earlier one, it starts a new thread with a copy of the items before it (one query). A
    finished response in a conversation appends its input and output items to it.
    """
    response = storable(response)
    items = [stored_item(storable(item)) for item in inputs] + list(response["output"])
    start = None
    if continuation.thread_id is None:
        thread = ItemThread.objects.create(api_key_id=key_id, length=len(items))
        start = 0
    else:
        thread = ItemThread(pk=continuation.thread_id)
        if continuation.conversation_id is not None:
            if response["status"] in FINISHED:
                start = _claim(continuation.thread_id, len(items), at=None)
        elif not continuation.in_conversation:
            start = _claim(continuation.thread_id, len(items), at=continuation.end)
        if start is None:
            # A branch (the chain went on from here already), or a response that does not
            # join a conversation: a thread of its own, with a copy of what it continued.
            thread = ItemThread.objects.create(
                api_key_id=key_id, length=continuation.end + len(items)
            )
            _copy_items(continuation.thread_id, thread.pk, before=continuation.end)
            start = continuation.end
    StoredItem.objects.bulk_create(
        StoredItem(thread=thread, position=start + offset, item_id=item["id"], item=item)
        for offset, item in enumerate(items)
    )
    return StoredResponse.objects.create(
        response_id=response["id"],
        api_key_id=key_id,
        model=response["model"],
        model_name=model_name,
        status=response["status"],
        response=response,
        thread=thread,
        input_start=start,
        output_start=start + len(inputs),
        end=start + len(items),
    )


def _claim(thread_id: int, count: int, *, at: int | None) -> int | None:
    """Take `count` positions at the end of a thread; the first of them. With `at`, only if the
    thread still ends there (else None): one conditional update, so that two requests
    continuing the same response cannot both append to its thread (the second branches)."""
    threads = ItemThread.objects.filter(pk=thread_id)
    if at is not None:
        return at if threads.filter(length=at).update(length=F("length") + count) else None
    if not threads.update(length=F("length") + count):
        return None
    return threads.values_list("length", flat=True).get() - count


def _copy_items(source: int, target: int, *, before: int) -> None:
    """Copy a thread's items before a position into another thread: one statement."""
    table = connection.ops.quote_name(StoredItem._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (thread_id, position, item_id, item)"
            f" SELECT %s, position, item_id, item FROM {table}"
            " WHERE thread_id = %s AND position < %s",
            [target, source, before],
        )


# ---------------------------------------------------------------------------------------------
# Stored responses: read, list input items, delete, prune


def _owned_response(*, key_id: int | None, response_id: str) -> QuerySet[StoredResponse]:
    return StoredResponse.objects.filter(response_id=response_id, api_key=key_id)


def _response_not_found(response_id: str) -> ResponseNotFound:
    return ResponseNotFound(f"Response with id '{response_id}' not found.", param="response_id")


def get_response(*, key_id: int | None, response_id: str) -> dict[str, Any]:
    """The stored response object (one query)."""
    found = _owned_response(key_id=key_id, response_id=response_id)
    response = found.values_list("response", flat=True).first()
    if response is None:
        raise _response_not_found(response_id)
    return response


@transaction.atomic
def delete_response(*, key_id: int | None, response_id: str) -> None:
    """Forget a stored response. Its items stay while a later response continues from them or
    a conversation holds them; the thread goes with the last response that uses it."""
    found = _owned_response(key_id=key_id, response_id=response_id)
    thread_id = found.values_list("thread_id", flat=True).first()
    if thread_id is None:
        raise _response_not_found(response_id)
    found.delete()
    _delete_unused_threads(ItemThread.objects.filter(pk=thread_id))


def _delete_unused_threads(threads: QuerySet[ItemThread]) -> int:
    unused = threads.filter(responses__isnull=True, conversation__isnull=True)
    ids = list(unused.values_list("pk", flat=True))
    if ids:
        ItemThread.objects.filter(pk__in=ids).delete()  # their items with them
    return len(ids)


@dataclass(frozen=True)
class ItemPage:
    """One page of items, as OpenAI lists them (`object: list`)."""

    items: list[dict[str, Any]]
    has_more: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "object": "list",
            "data": self.items,
            "first_id": self.items[0]["id"] if self.items else None,
            "last_id": self.items[-1]["id"] if self.items else None,
            "has_more": self.has_more,
        }


@dataclass(frozen=True)
class PageQuery:
    """`limit` (1-100, 20), `order` (`asc`, `desc`: the default) and the cursors `after` and
    `before` (item ids), as OpenAI's list endpoints take them; read from query parameters."""

    limit: int = DEFAULT_LIST_LIMIT
    order: str = "desc"
    after: str | None = None
    before: str | None = None

    @classmethod
    def from_query(cls, query: Any) -> PageQuery:
        limit_text = query.get("limit")
        limit = DEFAULT_LIST_LIMIT
        if limit_text is not None:
            if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_LIST_LIMIT:
                raise InvalidRequest(
                    f"limit: expected a whole number from 1 to {MAX_LIST_LIMIT}, "
                    f"got {limit_text!r}",
                    param="limit",
                )
            limit = int(limit_text)
        order = query.get("order") or "desc"
        if order not in ("asc", "desc"):
            raise InvalidRequest(f"order: expected 'asc' or 'desc', got {order!r}", param="order")
        return cls(limit, order, query.get("after") or None, query.get("before") or None)


def _page(items: QuerySet[StoredItem], page: PageQuery) -> ItemPage:
    """A page of `items` (one thread's, in a range): one query per cursor, one for the page."""
    ascending = page.order == "asc"
    for cursor, name in ((page.after, "after"), (page.before, "before")):
        if cursor is None:
            continue
        position = items.filter(item_id=cursor).values_list("position", flat=True).first()
        if position is None:
            raise InvalidRequest(f"{name}: no item with id '{cursor}' here", param=name)
        # `after` moves on in the list's order; `before` goes back in it.
        if (name == "after") == ascending:
            items = items.filter(position__gt=position)
        else:
            items = items.filter(position__lt=position)
    rows = list(
        items.order_by("position" if ascending else "-position").values_list("item", flat=True)[
            : page.limit + 1
        ]
    )
    return ItemPage(rows[: page.limit], has_more=len(rows) > page.limit)


def list_input_items(*, key_id: int | None, response_id: str, page: PageQuery) -> ItemPage:
    """The input items of a stored response, a page at a time."""
    found = (
        _owned_response(key_id=key_id, response_id=response_id)
        .values_list("thread_id", "input_start", "output_start")
        .first()
    )
    if found is None:
        raise _response_not_found(response_id)
    thread_id, start, end = found
    items = StoredItem.objects.filter(thread_id=thread_id, position__gte=start, position__lt=end)
    return _page(items, page)


def prune_responses(*, older_than_days: int) -> int:
    """Delete the stored responses made more than `older_than_days` days ago, and the items no
    stored response or conversation uses any more; returns how many responses were deleted."""
    if not isinstance(older_than_days, int) or older_than_days < 0:
        raise InvalidRequest(
            f"older_than_days must be a whole number of days, 0 or more, got {older_than_days!r}",
            param="older_than_days",
        )
    cutoff = timezone.now() - timedelta(days=older_than_days)
    with transaction.atomic():
        old = StoredResponse.objects.filter(created_at__lt=cutoff)
        threads = list(old.values_list("thread_id", flat=True).distinct())
        deleted, _ = old.delete()
        _delete_unused_threads(ItemThread.objects.filter(pk__in=threads))
    return deleted


def list_stored_responses() -> QuerySet[StoredResponse]:
    """Every stored response, newest first, with its key (for the admin)."""
    return StoredResponse.objects.select_related("api_key").order_by("-created_at")


# ---------------------------------------------------------------------------------------------
# Conversations


def check_metadata(metadata: Any, param: str = "metadata") -> dict[str, str]:
    """Metadata as OpenAI takes it (16 string pairs at most), else a 400 naming it."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise InvalidRequest(
            f"{param}: expected an object of strings, got {describe(metadata)}", param=param
        )
    if len(metadata) > MAX_METADATA_PAIRS:
        raise InvalidRequest(
            f"{param}: at most {MAX_METADATA_PAIRS} pairs, got {len(metadata)}", param=param
        )
    for name, value in metadata.items():
        if len(name) > MAX_METADATA_KEY:
            raise InvalidRequest(
                f"{param}: keys are at most {MAX_METADATA_KEY} characters", param=param
            )
        if not isinstance(value, str) or len(value) > MAX_METADATA_VALUE:
            raise InvalidRequest(
                f"{param}.{name}: expected a string of at most {MAX_METADATA_VALUE} characters,"
                f" got {describe(value)}",
                param=f"{param}.{name}",
            )
    return metadata


def conversation_object(conversation: Conversation) -> dict[str, Any]:
    return {
        "id": conversation.conversation_id,
        "object": "conversation",
        "created_at": int(conversation.created_at.timestamp()),
        "metadata": conversation.metadata,
    }


@transaction.atomic
def create_conversation(
    *,
    key_id: int | None,
    metadata: dict[str, str] | None = None,
    items: Sequence[dict[str, Any]] = (),
) -> Conversation:
    """A new conversation with its first items (checked already)."""
    stored = [stored_item(storable(item)) for item in items]
    thread = ItemThread.objects.create(api_key_id=key_id, length=len(stored))
    StoredItem.objects.bulk_create(
        StoredItem(thread=thread, position=position, item_id=item["id"], item=item)
        for position, item in enumerate(stored)
    )
    return Conversation.objects.create(
        conversation_id=new_id("conv"),
        api_key_id=key_id,
        thread=thread,
        metadata=storable(check_metadata(metadata)),
    )


def get_conversation(*, key_id: int | None, conversation_id: str) -> Conversation:
    found = Conversation.objects.filter(conversation_id=conversation_id, api_key=key_id).first()
    if found is None:
        raise ConversationNotFound(
            f"Conversation with id '{conversation_id}' not found.", param="conversation_id"
        )
    return found


def update_conversation(
    *, key_id: int | None, conversation_id: str, metadata: dict[str, str]
) -> Conversation:
    """Replace a conversation's metadata."""
    conversation = get_conversation(key_id=key_id, conversation_id=conversation_id)
    conversation.metadata = storable(check_metadata(metadata))
    conversation.save(update_fields=["metadata"])
    return conversation


@transaction.atomic
def delete_conversation(*, key_id: int | None, conversation_id: str) -> None:
    """Forget a conversation and its items (responses that continued it keep theirs)."""
    conversation = get_conversation(key_id=key_id, conversation_id=conversation_id)
    thread_id = conversation.thread_id
    conversation.delete()
    threads = ItemThread.objects.filter(pk=thread_id)
    if not _delete_unused_threads(threads):
        # Stored responses still continue from this thread: what they saw stays, the rest goes.
        used = StoredResponse.objects.filter(thread_id=thread_id).aggregate(end=Max("end"))
        StoredItem.objects.filter(thread_id=thread_id, position__gte=used["end"]).delete()


@transaction.atomic
def add_conversation_items(
    *, key_id: int | None, conversation_id: str, items: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Append items (checked already) to a conversation; returns them as stored."""
    conversation = get_conversation(key_id=key_id, conversation_id=conversation_id)
    stored = [stored_item(storable(item)) for item in items]
    start = _claim(conversation.thread_id, len(stored), at=None)
    assert start is not None  # the conversation, read in this transaction, holds its thread
    thread_id = conversation.thread_id
    StoredItem.objects.bulk_create(
        StoredItem(thread_id=thread_id, position=start + offset, item_id=item["id"], item=item)
        for offset, item in enumerate(stored)
    )
    return stored


def list_conversation_items(
    *, key_id: int | None, conversation_id: str, page: PageQuery
) -> ItemPage:
    conversation = get_conversation(key_id=key_id, conversation_id=conversation_id)
    return _page(StoredItem.objects.filter(thread_id=conversation.thread_id), page)


def _conversation_item(
    *, key_id: int | None, conversation_id: str, item_id: str
) -> tuple[Conversation, QuerySet[StoredItem]]:
    conversation = get_conversation(key_id=key_id, conversation_id=conversation_id)
    found = StoredItem.objects.filter(thread_id=conversation.thread_id, item_id=item_id)
    if not found.exists():
        raise ItemNotFound(f"Item with id '{item_id}' not found.", param="item_id")
    return conversation, found


def get_conversation_item(
    *, key_id: int | None, conversation_id: str, item_id: str
) -> dict[str, Any]:
    _conversation, found = _conversation_item(
        key_id=key_id, conversation_id=conversation_id, item_id=item_id
    )
    return found.order_by("position").values_list("item", flat=True)[0]


def delete_conversation_item(
    *, key_id: int | None, conversation_id: str, item_id: str
) -> Conversation:
    """Remove an item from a conversation; returns the conversation. A response that was
    answered from it keeps seeing it only when it was stored on its own thread."""
    conversation, found = _conversation_item(
        key_id=key_id, conversation_id=conversation_id, item_id=item_id
    )
    found.delete()
    return conversation
