"""HTTP for the Responses API's stored state: `/v1/responses/{id}` (retrieve, delete, input
items) and the Conversations API (`/v1/conversations`…), as OpenAI's.

Thin: each view reads the request and calls `chatmodels.responses_store`, which answers only
with what the caller's API key made (anything else is 404, as if it did not exist).
"""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpResponse
from rest_framework.request import Request
from rest_framework.views import APIView

from chatmodels import responses_store
from chatmodels.api import openapi
from chatmodels.api.auth import api_key
from chatmodels.exceptions import (
    ConversationNotFound,
    InvalidRequest,
    ItemNotFound,
    RequestTooLarge,
    ResponseNotFound,
    raises,
)
from chatmodels.responses_store import MAX_ITEMS_PER_CALL, PageQuery
from chatmodels.serving.dialects.responses_request import check_input_items
from chatmodels.serving.pipeline import read_json_object


def _key_id(request: Request) -> int | None:
    key = api_key(request)
    return key.id if key is not None else None


def _json(data: Any) -> HttpResponse:
    return HttpResponse(json.dumps(data), content_type="application/json")


def _deleted(object_id: str, kind: str) -> HttpResponse:
    return _json({"id": object_id, "object": f"{kind}.deleted", "deleted": True})


def _items(body: dict[str, Any], *, required: bool) -> list[dict[str, Any]]:
    """The body's `items`: input items, at most 20 (a 400 names the one that is wrong)."""
    items = body.get("items")
    if items is None and not required:
        return []
    if not isinstance(items, list) or (required and not items):
        raise InvalidRequest("items: expected a list of 1 to 20 input items", param="items")
    if len(items) > MAX_ITEMS_PER_CALL:
        raise InvalidRequest(
            f"items: at most {MAX_ITEMS_PER_CALL} items at a time, got {len(items)}",
            param="items",
        )
    return check_input_items(items, "items") if items else []


# ---------------------------------------------------------------------------------------------
# /v1/responses/{response_id}


@openapi.stored_response
@raises(ResponseNotFound)
class StoredResponseView(APIView):
    """A stored response of this API key."""

    @raises(InvalidRequest)
    def get(self, request: Request, response_id: str) -> HttpResponse:
        if request.query_params.get("stream") in ("true", "1"):
            raise InvalidRequest(
                "stream: is not supported here: a stored response is complete; "
                "retrieve it without stream",
                param="stream",
            )
        return _json(responses_store.get_response(key_id=_key_id(request), response_id=response_id))

    def delete(self, request: Request, response_id: str) -> HttpResponse:
        responses_store.delete_response(key_id=_key_id(request), response_id=response_id)
        return _deleted(response_id, "response")


@openapi.response_input_items
@raises(ResponseNotFound, InvalidRequest)
class ResponseInputItemsView(APIView):
    """The input items of a stored response, a page at a time."""

    def get(self, request: Request, response_id: str) -> HttpResponse:
        page = responses_store.list_input_items(
            key_id=_key_id(request),
            response_id=response_id,
            page=PageQuery.from_query(request.query_params),
        )
        return _json(page.to_dict())


# ---------------------------------------------------------------------------------------------
# /v1/conversations


@openapi.conversations
@raises(InvalidRequest, RequestTooLarge)
class ConversationsView(APIView):
    """Create a conversation."""

    def post(self, request: Request) -> HttpResponse:
        # Everything is optional: no body at all is an empty conversation, as OpenAI's.
        empty = request.META.get("CONTENT_LENGTH") in (None, "", "0") and not (
            request.META.get("HTTP_TRANSFER_ENCODING")
        )
        body = {} if empty else read_json_object(request)
        conversation = responses_store.create_conversation(
            key_id=_key_id(request),
            metadata=responses_store.check_metadata(body.get("metadata")),
            items=_items(body, required=False),
        )
        return _json(responses_store.conversation_object(conversation))


@openapi.conversation
@raises(ConversationNotFound)
class ConversationView(APIView):
    """One conversation of this API key: read it, change its metadata, delete it."""

    def get(self, request: Request, conversation_id: str) -> HttpResponse:
        conversation = responses_store.get_conversation(
            key_id=_key_id(request), conversation_id=conversation_id
        )
        return _json(responses_store.conversation_object(conversation))

    @raises(InvalidRequest, RequestTooLarge)
    def post(self, request: Request, conversation_id: str) -> HttpResponse:
        body = read_json_object(request)
        if "metadata" not in body:
            raise InvalidRequest("metadata: is required", param="metadata")
        conversation = responses_store.update_conversation(
            key_id=_key_id(request),
            conversation_id=conversation_id,
            metadata=responses_store.check_metadata(body["metadata"]),
        )
        return _json(responses_store.conversation_object(conversation))

    def delete(self, request: Request, conversation_id: str) -> HttpResponse:
        responses_store.delete_conversation(
            key_id=_key_id(request), conversation_id=conversation_id
        )
        return _deleted(conversation_id, "conversation")


@openapi.conversation_items
@raises(ConversationNotFound, InvalidRequest)
class ConversationItemsView(APIView):
    """A conversation's items: list them a page at a time, or add some."""

    def get(self, request: Request, conversation_id: str) -> HttpResponse:
        page = responses_store.list_conversation_items(
            key_id=_key_id(request),
            conversation_id=conversation_id,
            page=PageQuery.from_query(request.query_params),
        )
        return _json(page.to_dict())

    @raises(RequestTooLarge)
    def post(self, request: Request, conversation_id: str) -> HttpResponse:
        body = read_json_object(request)
        added = responses_store.add_conversation_items(
            key_id=_key_id(request),
            conversation_id=conversation_id,
            items=_items(body, required=True),
        )
        return _json(responses_store.ItemPage(added, has_more=False).to_dict())


@openapi.conversation_item
@raises(ConversationNotFound, ItemNotFound)
class ConversationItemView(APIView):
    """One item of a conversation: read it, or remove it (answers with the conversation)."""

    def get(self, request: Request, conversation_id: str, item_id: str) -> HttpResponse:
        return _json(
            responses_store.get_conversation_item(
                key_id=_key_id(request), conversation_id=conversation_id, item_id=item_id
            )
        )

    def delete(self, request: Request, conversation_id: str, item_id: str) -> HttpResponse:
        conversation = responses_store.delete_conversation_item(
            key_id=_key_id(request), conversation_id=conversation_id, item_id=item_id
        )
        return _json(responses_store.conversation_object(conversation))
