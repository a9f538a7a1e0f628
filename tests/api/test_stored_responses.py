"""The Responses API's stored state as a client sees it: `store`, `previous_response_id`,
`GET`/`DELETE /v1/responses/{id}`, its input items, and the Conversations API, each object
validated against OpenAI's own spec; what one key stores, another cannot see; continuing a
chain costs the same queries whatever its length."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chatmodels import responses_store
from chatmodels.models import Conversation, ItemThread, StoredItem, StoredResponse
from chatmodels.serving import lookups
from tests.api import test_openai_spec
from tests.api.calls import error_of, get
from tests.helpers import auth, make_key, register, streamed_body
from tests.sample_models import MessagesReportModel, StreamingModel, ToolRoundTripModel

pytestmark = pytest.mark.django_db

openai_spec = test_openai_spec.openai_spec
assert_matches = test_openai_spec.assert_matches

RESPONSES = "/v1/responses"
CONVERSATIONS = "/v1/conversations"


@pytest.fixture
def report(db):
    """A model that answers with the messages it was given (as JSON)."""
    return register(name="report", model=MessagesReportModel())


def _post(client, path: str, body: dict[str, Any], key: str | None):
    return client.post(
        path, data=json.dumps(body), content_type="application/json", **(auth(key) if key else {})
    )


def _delete(client, path: str, key: str | None):
    return client.delete(path, **(auth(key) if key else {}))


def _create(client, key: str, **body: Any) -> dict[str, Any]:
    response = _post(client, RESPONSES, {"model": "report", **body}, key)
    assert response.status_code == 200, response.content
    return response.json()


def _seen(response: dict[str, Any]) -> list[tuple[str, Any]]:
    """(role, content) of each message the report model was given."""
    report = json.loads(response["output"][0]["content"][0]["text"])
    return [(message["role"], message.get("content")) for message in report["messages"]]


# --- store and retrieve ------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_a_responses_agent_is_stored_and_continued_like_a_chat_model(client, key, stream):
    register(name="counting", model="tests/agent_models.py:CountingAgent")
    first = _post(client, RESPONSES, {"model": "counting", "input": "one", "stream": stream}, key)
    assert first.status_code == 200, first.content
    if stream:
        done = [line for line in streamed_body(first).decode().splitlines() if "completed" in line]
        first_id = json.loads(done[-1].removeprefix("data: "))["response"]["id"]
    else:
        first_id = first.json()["id"]

    stored = get(client, f"{RESPONSES}/{first_id}", key=key)
    second = _post(
        client,
        RESPONSES,
        {"model": "counting", "input": "two", "previous_response_id": first_id},
        key,
    )

    assert stored.status_code == 200 and stored.json()["output"][0]["id"] == "msg_n"
    # the agent saw the stored turn (its input and its answer) before the new input
    assert second.json()["output"][0]["content"][0]["text"] == "3 items, first: one"


def test_a_response_is_stored_and_retrieved_as_it_was_answered(client, key, report, assert_matches):
    created = _create(client, key, input="hello", metadata={"ticket": "7"})

    fetched = get(client, f"{RESPONSES}/{created['id']}", key=key)

    assert fetched.status_code == 200
    assert fetched.json() == created
    assert created["store"] is True
    assert_matches(fetched.json(), "Response")


def test_store_false_keeps_nothing(client, key, report):
    created = _create(client, key, input="hello", store=False)

    assert created["store"] is False
    assert error_of(get(client, f"{RESPONSES}/{created['id']}", key=key), 404)
    assert not StoredResponse.objects.exists() and not StoredItem.objects.exists()
    continued = _post(
        client,
        RESPONSES,
        {"model": "report", "input": "x", "previous_response_id": created["id"]},
        key,
    )
    assert error_of(continued, 400)["param"] == "previous_response_id"


def test_previous_response_id_continues_the_whole_chain_without_its_instructions(
    client, key, report, assert_matches
):
    first = _create(client, key, input="one", instructions="be brief")
    second = _create(client, key, input="two", previous_response_id=first["id"])
    third = _create(
        client, key, input=[{"role": "user", "content": "three"}], previous_response_id=second["id"]
    )

    seen = _seen(third)
    assert [role for role, _ in seen] == ["user", "assistant", "user", "assistant", "user"]
    assert (
        seen[0] == ("user", "one") and seen[2] == ("user", "two") and seen[4] == ("user", "three")
    )
    assert seen[1][1] == first["output"][0]["content"][0]["text"]
    assert third["previous_response_id"] == second["id"]
    assert_matches(third, "Response")


def test_continuing_an_earlier_response_branches_without_the_later_turns(client, key, report):
    first = _create(client, key, input="one")
    _create(client, key, input="two", previous_response_id=first["id"])

    branch = _create(client, key, input="other", previous_response_id=first["id"])
    after_branch = _create(client, key, input="more", previous_response_id=branch["id"])

    assert [content for role, content in _seen(branch) if role == "user"] == ["one", "other"]
    assert [content for role, content in _seen(after_branch) if role == "user"] == [
        "one",
        "other",
        "more",
    ]


def test_function_call_outputs_continue_a_tool_call(client, key):
    register(name="tools", model=ToolRoundTripModel())
    tool = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}
    first = _post(client, RESPONSES, {"model": "tools", "input": "Paris", "tools": [tool]}, key)
    (call,) = first.json()["output"]

    answer = _post(
        client,
        RESPONSES,
        {
            "model": "tools",
            "previous_response_id": first.json()["id"],
            "input": [
                {"type": "function_call_output", "call_id": call["call_id"], "output": "sunny"}
            ],
        },
        key,
    ).json()

    assert answer["output"][0]["content"][0]["text"] == "The tool said: sunny"


def test_input_items_are_listed_a_page_at_a_time_as_openai_does(
    client, key, report, assert_matches
):
    inputs = [{"role": "user", "content": f"m{n}"} for n in range(5)]
    created = _create(client, key, input=inputs)
    path = f"{RESPONSES}/{created['id']}/input_items"

    newest_first = get(client, path, key=key).json()
    assert_matches(newest_first, "ResponseItemList")
    texts = [item["content"][0]["text"] for item in newest_first["data"]]
    assert texts == ["m4", "m3", "m2", "m1", "m0"]
    assert newest_first["has_more"] is False
    assert newest_first["first_id"] == newest_first["data"][0]["id"]

    page = get(client, f"{path}?order=asc&limit=2", key=key).json()
    assert [item["content"][0]["text"] for item in page["data"]] == ["m0", "m1"]
    assert page["has_more"] is True
    following = get(client, f"{path}?order=asc&limit=2&after={page['last_id']}", key=key).json()
    assert [item["content"][0]["text"] for item in following["data"]] == ["m2", "m3"]
    before = get(client, f"{path}?order=asc&before={following['first_id']}", key=key).json()
    assert [item["content"][0]["text"] for item in before["data"]] == ["m0", "m1"]

    assert error_of(get(client, f"{path}?limit=101", key=key), 400)["param"] == "limit"
    assert error_of(get(client, f"{path}?order=up", key=key), 400)["param"] == "order"
    assert error_of(get(client, f"{path}?after=msg_nope", key=key), 400)["param"] == "after"


def test_a_string_input_is_listed_as_a_user_message_item(client, key, report, assert_matches):
    created = _create(client, key, input="hello")

    (item,) = get(client, f"{RESPONSES}/{created['id']}/input_items", key=key).json()["data"]

    assert item["type"] == "message" and item["role"] == "user"
    assert item["id"].startswith("msg_")
    assert item["content"] == [{"type": "input_text", "text": "hello"}]
    assert_matches(item, "ItemResource")


def test_another_key_sees_none_of_it(client, key, report):
    created = _create(client, key, input="secret")
    conversation = _post(client, CONVERSATIONS, {}, key).json()
    other = make_key(name="other")[1]

    for path in (
        f"{RESPONSES}/{created['id']}",
        f"{RESPONSES}/{created['id']}/input_items",
        f"{CONVERSATIONS}/{conversation['id']}",
        f"{CONVERSATIONS}/{conversation['id']}/items",
    ):
        assert error_of(get(client, path, key=other), 404)["code"] == "not_found", path
    assert error_of(_delete(client, f"{RESPONSES}/{created['id']}", other), 404)
    assert error_of(_delete(client, f"{CONVERSATIONS}/{conversation['id']}", other), 404)
    continued = _post(
        client,
        RESPONSES,
        {"model": "report", "input": "x", "previous_response_id": created["id"]},
        other,
    )
    assert error_of(continued, 400)["code"] == "previous_response_not_found"
    in_conversation = _post(
        client,
        RESPONSES,
        {"model": "report", "input": "x", "conversation": conversation["id"]},
        other,
    )
    assert error_of(in_conversation, 404)["param"] == "conversation"
    assert get(client, f"{RESPONSES}/{created['id']}", key=key).status_code == 200


def test_deleting_a_response_leaves_the_later_ones_whole(client, key, report):
    first = _create(client, key, input="one")
    second = _create(client, key, input="two", previous_response_id=first["id"])

    deleted = _delete(client, f"{RESPONSES}/{first['id']}", key)

    assert deleted.json() == {"id": first["id"], "object": "response.deleted", "deleted": True}
    assert error_of(get(client, f"{RESPONSES}/{first['id']}", key=key), 404)
    third = _create(client, key, input="three", previous_response_id=second["id"])
    assert [content for role, content in _seen(third) if role == "user"] == ["one", "two", "three"]


def test_deleting_the_only_response_of_a_thread_deletes_its_items(client, key, report):
    created = _create(client, key, input="one")

    _delete(client, f"{RESPONSES}/{created['id']}", key)

    assert not ItemThread.objects.exists() and not StoredItem.objects.exists()


# --- streams -----------------------------------------------------------------------------------


def _events(response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.content
    text = streamed_body(response).decode()
    return [json.loads(block.split("\ndata: ")[1]) for block in text.split("\n\n")[:-1]]


def test_a_stream_stores_its_completed_response(client, key, assert_matches):
    register(name="tools", model=ToolRoundTripModel())

    events = _events(
        _post(client, RESPONSES, {"model": "tools", "input": "a b c", "stream": True}, key)
    )

    final = events[-1]["response"]
    assert events[-1]["type"] == "response.completed" and final["store"] is True
    stored = get(client, f"{RESPONSES}/{final['id']}", key=key).json()
    assert stored == final
    assert_matches(stored, "Response")


def test_a_stream_that_fails_is_stored_as_failed(client, key, assert_matches):
    register(name="streamer", model=StreamingModel())

    events = _events(
        _post(client, RESPONSES, {"model": "streamer", "input": "raise now", "stream": True}, key)
    )

    assert events[-1]["type"] == "response.failed"
    stored = get(client, f"{RESPONSES}/{events[-1]['response']['id']}", key=key).json()
    assert stored["status"] == "failed" and stored["error"]["code"] == "server_error"
    assert_matches(stored, "Response")


# --- conversations -----------------------------------------------------------------------------


def test_a_conversation_is_created_read_updated_and_deleted(client, key, assert_matches):
    created = _post(
        client,
        CONVERSATIONS,
        {"metadata": {"topic": "demo"}, "items": [{"role": "user", "content": "hi"}]},
        key,
    ).json()
    assert_matches(created, "ConversationResource")
    assert created["id"].startswith("conv_") and created["metadata"] == {"topic": "demo"}
    path = f"{CONVERSATIONS}/{created['id']}"

    assert get(client, path, key=key).json() == created
    updated = _post(client, path, {"metadata": {"topic": "other"}}, key).json()
    assert updated == {**created, "metadata": {"topic": "other"}}
    assert_matches(updated, "ConversationResource")

    deleted = _delete(client, path, key).json()
    assert_matches(deleted, "DeletedConversationResource")
    assert deleted == {"id": created["id"], "object": "conversation.deleted", "deleted": True}
    assert error_of(get(client, path, key=key), 404)
    assert not StoredItem.objects.exists() and not Conversation.objects.exists()


def test_conversation_items_are_added_listed_read_and_deleted(client, key, assert_matches):
    conversation = _post(client, CONVERSATIONS, {}, key).json()
    items_path = f"{CONVERSATIONS}/{conversation['id']}/items"

    added = _post(
        client,
        items_path,
        {"items": [{"role": "user", "content": "one"}, {"role": "assistant", "content": "two"}]},
        key,
    ).json()
    assert_matches(added, "ConversationItemList")
    listed = get(client, f"{items_path}?order=asc", key=key).json()
    assert_matches(listed, "ConversationItemList")
    assert listed["data"] == added["data"]
    (first, second) = listed["data"]
    assert_matches(first, "ConversationItem")

    item = get(client, f"{items_path}/{second['id']}", key=key).json()
    assert item == second and item["content"][0]["type"] == "output_text"
    after_delete = _delete(client, f"{items_path}/{first['id']}", key).json()
    assert_matches(after_delete, "ConversationResource")
    assert [i["id"] for i in get(client, items_path, key=key).json()["data"]] == [second["id"]]
    assert error_of(get(client, f"{items_path}/{first['id']}", key=key), 404)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"items": []}, "items"),
        ({"items": [{"role": "robot", "content": "x"}]}, "items[0].role"),
        ({"items": [{"role": "user", "content": "x"}] * 21}, "items"),
        ({"items": "hello"}, "items"),
    ],
)
def test_bad_conversation_items_are_400_naming_the_item(client, key, body, param):
    conversation = _post(client, CONVERSATIONS, {}, key).json()

    response = _post(client, f"{CONVERSATIONS}/{conversation['id']}/items", body, key)

    assert error_of(response, 400)["param"] == param


def test_bad_metadata_is_400(client, key):
    assert error_of(_post(client, CONVERSATIONS, {"metadata": {"k": 5}}, key), 400)["param"] == (
        "metadata.k"
    )
    many = {f"k{n}": "v" for n in range(17)}
    assert error_of(_post(client, CONVERSATIONS, {"metadata": many}, key), 400)["param"] == (
        "metadata"
    )


def test_a_response_in_a_conversation_sees_its_items_and_adds_its_own(client, key, report):
    conversation = _post(
        client, CONVERSATIONS, {"items": [{"role": "user", "content": "earlier"}]}, key
    ).json()

    first = _create(client, key, input="now", conversation=conversation["id"])
    second = _create(client, key, input="then", conversation={"id": conversation["id"]})

    assert first["conversation"] == {"id": conversation["id"]}
    assert [content for role, content in _seen(second) if role == "user"] == [
        "earlier",
        "now",
        "then",
    ]
    items = get(client, f"{CONVERSATIONS}/{conversation['id']}/items?order=asc", key=key).json()
    assert [item["role"] for item in items["data"]] == [
        "user",
        "user",
        "assistant",
        "user",
        "assistant",
    ]
    assert items["data"][2]["id"] == first["output"][0]["id"]


def test_continuing_a_conversation_s_response_by_id_leaves_the_conversation_as_it_is(
    client, key, report
):
    conversation = _post(client, CONVERSATIONS, {}, key).json()
    in_conversation = _create(client, key, input="inside", conversation=conversation["id"])

    outside = _create(client, key, input="outside", previous_response_id=in_conversation["id"])

    assert [content for role, content in _seen(outside) if role == "user"] == [
        "inside",
        "outside",
    ]
    items = get(client, f"{CONVERSATIONS}/{conversation['id']}/items", key=key).json()["data"]
    assert len(items) == 2  # "inside" and its answer only


def test_an_item_id_the_database_cannot_hold_is_replaced_and_nul_is_kept_as_u_fffd(
    client, key, report
):
    long_id = "msg_" + "x" * 200
    created = _create(client, key, input=[{"id": long_id, "role": "user", "content": "a\u0000b"}])

    (item,) = get(client, f"{RESPONSES}/{created['id']}/input_items", key=key).json()["data"]

    assert item["id"].startswith("msg_") and item["id"] != long_id
    assert item["content"][0]["text"] == "a\ufffdb"


# --- bounded work, retention, admin ------------------------------------------------------------


def _chain(key_id: int, length: int) -> str:
    """A stored chain of `length` responses (through the same service the API stores with)."""
    continued = responses_store.Continuation()
    response_id = ""
    for turn in range(length):
        response_id = f"resp_chain{length}_{turn}"
        response = {
            "id": response_id,
            "model": "report",
            "status": "completed",
            "output": [
                {
                    "id": f"msg_out{length}_{turn}",
                    "type": "message",
                    "role": "assistant",
                    "status": "completed",
                    "content": [
                        {
                            "type": "output_text",
                            "text": f"a{turn}",
                            "annotations": [],
                            "logprobs": [],
                        }
                    ],
                }
            ],
        }
        responses_store.store_response(
            key_id=key_id,
            response=response,
            inputs=[{"role": "user", "content": f"q{turn}"}],
            model_name="report",
            continuation=continued,
        )
        continued = responses_store.find_continuation(
            key_id=key_id, previous_response_id=response_id, conversation_id=None
        )
    return response_id


def test_continuing_a_chain_of_200_costs_the_queries_of_a_chain_of_2(
    client, report, django_assert_num_queries
):
    api_key, raw = make_key(name="chains")
    short, long = _chain(api_key.id, 2), _chain(api_key.id, 200)
    _create(client, raw, input="warm up")  # the model's workers started, outside the counts

    lookups.forget()
    with CaptureQueriesContext(connection) as short_queries:
        answer = _create(client, raw, input="next", previous_response_id=short)
    assert len(_seen(answer)) == 5
    lookups.forget()
    with django_assert_num_queries(len(short_queries)):
        answer = _create(client, raw, input="next", previous_response_id=long)
    assert len(_seen(answer)) == 401
    # Key and version lookups, the chain's response and items, and the store's writes.
    assert 0 < len(short_queries) <= 12, [q["sql"] for q in short_queries.captured_queries]


def test_prune_responses_deletes_the_old_ones_and_their_unused_items(client, key, report, settings):
    old = _create(client, key, input="old")
    kept = _create(client, key, input="kept")
    StoredResponse.objects.filter(response_id=old["id"]).update(
        created_at=StoredResponse.objects.get(response_id=old["id"]).created_at - timedelta(days=31)
    )
    settings.CHATMODELS_RESPONSES_RETENTION_DAYS = 30

    call_command("prune_responses")

    assert error_of(get(client, f"{RESPONSES}/{old['id']}", key=key), 404)
    assert get(client, f"{RESPONSES}/{kept['id']}", key=key).status_code == 200
    assert ItemThread.objects.count() == 1


def test_the_admin_lists_stored_responses_per_key_and_model_read_only(
    client, key, report, admin_client
):
    created = _create(client, key, input="hello")
    stored = StoredResponse.objects.get(response_id=created["id"])

    listing = admin_client.get(
        f"/admin/chatmodels/storedresponse/?api_key__id__exact={stored.api_key_id}&model_name=report"
    )
    page = admin_client.get(f"/admin/chatmodels/storedresponse/{stored.pk}/change/")

    assert listing.status_code == 200 and created["id"] in listing.content.decode()
    assert page.status_code == 200 and "hello" in page.content.decode()
    assert admin_client.get("/admin/chatmodels/storedresponse/add/").status_code == 403
    assert b'name="_save"' not in page.content


def test_anonymous_calls_share_one_owner_that_no_key_can_read(client, key, report, settings):
    settings.CHATMODELS_ALLOW_ANONYMOUS = True
    anonymous = _create(client, None, input="open")
    keyed = _create(client, key, input="closed")

    assert get(client, f"{RESPONSES}/{anonymous['id']}").status_code == 200
    assert error_of(get(client, f"{RESPONSES}/{anonymous['id']}", key=key), 404)
    assert error_of(get(client, f"{RESPONSES}/{keyed['id']}"), 404)
    continued = _create(client, None, input="more", previous_response_id=anonymous["id"])
    assert [content for role, content in _seen(continued) if role == "user"] == ["open", "more"]


def test_prune_responses_keeps_conversations_and_what_they_hold(client, key, report):
    conversation = _post(client, CONVERSATIONS, {}, key).json()
    in_conversation = _create(client, key, input="kept", conversation=conversation["id"])

    out = io.StringIO()
    call_command("prune_responses", "--older-than", "0", stdout=out)

    assert out.getvalue().strip() == "Deleted 1 stored response older than 0 days"
    assert error_of(get(client, f"{RESPONSES}/{in_conversation['id']}", key=key), 404)
    items = get(client, f"{CONVERSATIONS}/{conversation['id']}/items", key=key).json()["data"]
    assert len(items) == 2


def test_prune_responses_refuses_a_negative_age():
    with pytest.raises(CommandError, match=r"^--older-than must be a whole number of days"):
        call_command("prune_responses", "--older-than", "-1")
