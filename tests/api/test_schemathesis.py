"""Schemathesis against our own `/api/schema/`: every operation, every check, a bounded run.

The schema is loaded from the running app (WSGI, in process) as a client would fetch it; the
demo echo model is registered under the name the schema's examples use, and a valid key is
sent, so that real 200s are checked as well as the errors. Seeded and derandomized: the same
cases every run.
"""

from __future__ import annotations

from datetime import datetime

import pytest
import schemathesis
from django.core import signals
from django.core.handlers.wsgi import WSGIHandler
from django.db import close_old_connections
from hypothesis import HealthCheck, settings

from examples.echo import EchoModel
from tests.helpers import make_key, register

# `--checks all`, positive and negative data, bounded: about 2 x 30 cases per operation and
# phase (examples, coverage, fuzzing), so the whole run takes well under a minute.
CONFIG = schemathesis.Config.from_dict(
    {
        "seed": 20261129,
        "generation": {
            "mode": "all",
            "max-examples": 30,
            "deterministic": True,
            "database": "none",
            # The key is always sent; the `ignored_auth` check tries without it and with a bad one.
            "with-security-parameters": False,
        },
        "checks": {"enabled": True},
        "phases": {"stateful": {"enabled": False}},  # read-only API: no links to follow
    }
)


@pytest.fixture(autouse=True)
def _in_process_requests():
    """As Django's test client does: the request cycle must not close the test's transaction."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def echo_key(db) -> str:
    register(name="echo", model=EchoModel(), aliases=["prod"])
    return make_key(name="schemathesis")[1]


# Loaded when the tests are collected (generating it needs no database).
schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", WSGIHandler(), config=CONFIG)


def breaks_a_rule_between_parameters(query) -> bool:
    """Rules between parameters, which their descriptions say but OpenAPI cannot express:
    `version` and `alias` exclude each other; `until` is later than `since`."""
    if not query:
        return False
    if "version" in query and "alias" in query:
        return True
    since, until = _moment(query.get("since")), _moment(query.get("until"))
    return since is not None and until is not None and since >= until


def _moment(value) -> datetime | None:
    try:
        return datetime.fromisoformat(value.upper())
    except (AttributeError, ValueError):
        return None


def names_stored_state_never_made(case) -> bool:
    """A response request continuing a stored response or conversation: generated ids name
    nothing this test stored (OpenAI answers 400 for an unknown `previous_response_id`)."""
    body = case.body if isinstance(case.body, dict) else {}
    return case.operation.path == "/v1/responses" and any(
        body.get(name) is not None for name in ("previous_response_id", "conversation")
    )


def names_a_tool_not_given(case) -> bool:
    """A `tool_choice` naming a function that is not among the request's `tools`: OpenAI's API
    refuses it, and no JSON Schema can say that one field names an entry of another."""
    body = case.body if isinstance(case.body, dict) else {}
    choice = body.get("tool_choice")
    if not isinstance(choice, dict) or choice.get("type") != "function":
        return False
    function = choice.get("function")
    name = function.get("name") if isinstance(function, dict) else choice.get("name")
    given = []
    for tool in body.get("tools") or []:
        if isinstance(tool, dict):
            inner = tool.get("function")
            given.append(inner.get("name") if isinstance(inner, dict) else tool.get("name"))
    return name not in given


@schema.parametrize()
# The echo model and the key are made once per operation and shared by all its cases.
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_api_answers_as_its_schema_says(case, echo_key):
    headers = {"Authorization": f"Bearer {echo_key}"}
    if case.method == case.operation.method.upper() and breaks_a_rule_between_parameters(
        case.query
    ):
        response = case.call(headers=headers)  # not a valid request, whatever the schema allows
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "invalid_value"
        return
    if case.method == case.operation.method.upper() and names_stored_state_never_made(case):
        response = case.call(headers=headers)
        assert response.status_code in (400, 404), response.text
        assert response.json()["error"]["code"] in (
            "previous_response_not_found",
            "not_found",
            "invalid_value",
        ), response.text
        return
    if case.method == case.operation.method.upper() and names_a_tool_not_given(case):
        response = case.call(headers=headers)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"].startswith("tool_choice"), response.text
        return
    case.call_and_validate(headers=headers)
