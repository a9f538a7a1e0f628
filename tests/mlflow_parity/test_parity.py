"""The same ChatModels, ResponsesAgents and ChatAgents under MLflow and under chatmodels, with
only their imports changed: the answers must be the same.

Each model of `models/` imports its types from `parity_types`, which each side provides:
`sides/mlflow/` (from `mlflow.pyfunc` and `mlflow.types.llm`) and `sides/chatmodels/` (from
`chatmodels`). MLflow side: in MLflow's own Python (`$MLFLOW_PYTHON`, or
`bench/.venv-mlflow/bin/python`, which `bench/run.sh` installs), `mlflow_side.py` saves each model
with `mlflow.pyfunc.save_model` (with its INPUT_EXAMPLE), loads it with
`mlflow.pyfunc.load_model` and calls `predict` / `predict_stream`. chatmodels side: here, each
model is registered with `services.register_model` (with the same input example) and invoked
through `runtime.invoke` / `runtime.invoke_stream`, as the HTTP API does (an agent in its own
request format, as `/api/models/<name>/invocations` takes it). Requests MLflow refuses must be
refused by chatmodels too. Skipped when no MLflow Python is found.

Ignored in the comparison: `id`, `created` and `model` (made per call or per server), `null`
values (the OpenAI format spells out some that MLflow leaves out; `custom_outputs`, the model's
own data, is compared as it is), and the `index` of streamed tool calls (the OpenAI stream format
requires it; MLflow's deltas carry whole tool calls without it).

tests/test_mlflow_parity.py holds the unit tests written from MLflow's documented behaviour.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
MLFLOW_PYTHON = Path(os.environ.get("MLFLOW_PYTHON") or ROOT / "bench/.venv-mlflow/bin/python")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not MLFLOW_PYTHON.exists(),
        reason=f"no MLflow Python at {MLFLOW_PYTHON}: set MLFLOW_PYTHON, or run bench/run.sh "
        "once (it installs MLflow into bench/.venv-mlflow)",
    ),
]

WEATHER_PARAMETERS = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "City name"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        # MLflow's signature allows only `type` in `items`.
        "days": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["city"],
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city",
            "parameters": WEATHER_PARAMETERS,
        },
    }
]


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


# (model, request, stream)
CALLS = [
    (
        "basic_params",
        {
            "messages": [{"role": "system", "content": "Be brief."}, *user("Hi")],
            "temperature": 0.3,
            "max_tokens": 20,
            "stop": ["END"],
            "n": 1,
            "top_p": 0.9,
            "custom_inputs": {"user_id": "u-1", "session": None},
        },
        False,
    ),
    ("basic_params", {"messages": user("defaults")}, False),
    ("streaming", {"messages": user("one two three")}, False),
    ("streaming", {"messages": user("one two three")}, True),
    ("tool_calling", {"messages": user("Weather in Oslo?"), "tools": TOOLS}, False),
    ("contextless", {"messages": user("Hi"), "n": 1}, False),
    ("contextless", {"messages": user("Hi")}, True),
    ("stream_custom_outputs", {"messages": user("Hi")}, True),
    ("stream_custom_outputs", {"messages": user("Hi")}, False),
    ("stream_tool_call", {"messages": user("Hi")}, True),
    # ResponsesAgent with a tool-calling loop that streams
    ("responses_tool_loop", {"input": user("What is 6 times 7?")}, False),
    ("responses_tool_loop", {"input": user("What is 6 times 7?")}, True),
    ("responses_tool_loop", {"input": user("Hi"), "custom_inputs": {"session": "s1"}}, False),
    # ResponsesAgent wrapping a chat-completions call
    ("responses_chat_completions", {"input": user("one two three")}, False),
    ("responses_chat_completions", {"input": user("one two three")}, True),
    (
        "responses_chat_completions",
        {
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "weather?"}]},
                {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
                {
                    "type": "message",
                    "id": "m0",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": "It is sunny", "annotations": []}],
                },
                {"role": "user", "content": "and tomorrow"},
            ],
            "temperature": 0.2,
            "custom_inputs": {"k": [1, None]},
        },
        False,
    ),
    # ChatAgent
    (
        "chat_agent",
        {
            "messages": [{"role": "system", "content": "Be kind."}, *user("Hi")],
            "context": {"conversation_id": "c1", "user_id": "u1"},
            "custom_inputs": {"x": 1},
        },
        False,
    ),
    ("chat_agent", {"messages": user("Hi there")}, True),
]
AGENTS = {"responses_tool_loop", "responses_chat_completions", "chat_agent"}

# Requests MLflow's types refuse (ChatMessage / ChatParams validation): both sides must refuse.
REFUSED = [
    ("a message with neither content nor tool calls", {"messages": [{"role": "user"}]}),
    (
        "a message with both content and refusal",
        {"messages": [{"role": "assistant", "content": "a", "refusal": "b"}, *user("Hi")]},
    ),
    ("a temperature that is a string", {"messages": user("Hi"), "temperature": "hot"}),
    ("custom_inputs that is a list", {"messages": user("Hi"), "custom_inputs": ["a"]}),
    ("a stop that is a number", {"messages": user("Hi"), "stop": 3}),
]


# Agent requests MLflow's types refuse: both sides must refuse (model, reason, request).
AGENT_REFUSED = [
    ("responses_tool_loop", "an input message of an unknown role", {"input": [
        *user("x"), {"role": "robot", "content": "beep"}]}),
    ("responses_tool_loop", "no input", {"custom_inputs": {}}),
    ("chat_agent", "a tool message without a name", {"messages": [
        {"role": "tool", "content": "x", "tool_call_id": "c1"}]}),
    ("chat_agent", "a message with neither content nor tool calls",
     {"messages": [{"role": "user"}]}),
]  # fmt: skip


def normalized(value: Any, key: str = "") -> Any:
    """An answer without what the comparison ignores (the module's docstring)."""
    if key == "custom_outputs":
        return value  # the model's own data: compared as it is, None values included
    if isinstance(value, dict):
        result = {}
        for k, item in value.items():
            if item is None or (k in ("id", "created", "model") and key in ("", "[]")):
                continue
            if k == "index" and key == "tool_calls[]":
                continue
            result[k] = normalized(item, k)
        return result
    if isinstance(value, list):
        return [normalized(item, f"{key}[]" if key else "[]") for item in value]
    return value


@pytest.fixture(scope="module")
def mlflow_side(tmp_path_factory) -> dict[str, list]:
    """Every call and refused request under MLflow, in one run of its Python."""
    work = tmp_path_factory.mktemp("mlflow")
    result = subprocess.run(
        [str(MLFLOW_PYTHON), str(HERE / "mlflow_side.py"), str(work)],
        input=json.dumps({"calls": CALLS, "refused": REFUSED, "agent_refused": AGENT_REFUSED}),
        capture_output=True,
        text=True,
        timeout=600,
        cwd=work,
        env={**os.environ, "MLFLOW_TRACKING_URI": (work / "mlruns").as_uri()},
    )
    assert result.returncode == 0, f"the MLflow side failed:\n{result.stderr[-3000:]}"
    return json.loads(result.stdout)


@pytest.fixture
def chatmodels_side(db, monkeypatch):
    """`run(model, request, stream)` under chatmodels: registers the model once, then invokes."""
    from chatmodels import ChatAgent, ChatModel, ResponsesAgent, selectors, services
    from chatmodels.interfaces import AgentRequest
    from chatmodels.serving import eventloop, runtime
    from chatmodels.types import ChatRequest

    bases = (ChatModel, ResponsesAgent, ChatAgent)

    monkeypatch.syspath_prepend(str(HERE / "sides" / "chatmodels"))
    registered = set()

    def register(name: str) -> None:
        module_name = f"parity_model_{name}"
        spec = importlib.util.spec_from_file_location(module_name, HERE / "models" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, module_name, module)  # cloudpickle wants it there
        spec.loader.exec_module(module)
        model_class = next(
            value
            for value in vars(module).values()
            if isinstance(value, type) and issubclass(value, bases) and value not in bases
        )
        services.register_model(
            name.replace("_", "-"), model_class, input_example=module.INPUT_EXAMPLE
        )
        registered.add(name)

    async def _all_chunks(version: Any, chat_request: Any, name: str) -> list[Any]:
        chunks = await runtime.invoke_stream(version, chat_request, served_name=name)
        batches = [batch async for batch in chunks.batches()]
        return [chunk for batch in batches for chunk in batch if chunk is not runtime.KEEP_ALIVE]

    def run(name: str, request: dict[str, Any], stream: bool) -> Any:
        if name not in registered:
            register(name)
        version = selectors.resolve_version(name=name.replace("_", "-"), version=None, alias=None)
        data = json.loads(json.dumps(request))
        if name in AGENTS:
            chat_request: Any = AgentRequest(data, stream=stream)
        else:
            chat_request = ChatRequest.from_dict(data)
        if stream:
            return eventloop.run(_all_chunks(version, chat_request, name))
        return eventloop.run(runtime.invoke(version, chat_request, served_name=name))

    return run


@pytest.mark.parametrize(
    "index",
    range(len(CALLS)),
    ids=[f"{model}-{'predict_stream' if stream else 'predict'}" for model, _, stream in CALLS],
)
def test_same_answer(mlflow_side, chatmodels_side, index):
    model, request, stream = CALLS[index]
    ours = json.loads(json.dumps(chatmodels_side(model, request, stream)))
    assert normalized(ours) == normalized(mlflow_side["answers"][index])


@pytest.mark.parametrize("index", range(len(REFUSED)), ids=[reason for reason, _ in REFUSED])
def test_same_refusal(mlflow_side, chatmodels_side, index):
    from chatmodels.exceptions import ChatModelsError

    reason, request = REFUSED[index]
    assert mlflow_side["refusals"][index] is not None, f"MLflow accepts {reason}"
    with pytest.raises(ChatModelsError):
        chatmodels_side("basic_params", request, False)


@pytest.mark.parametrize(
    "index", range(len(AGENT_REFUSED)), ids=[reason for _, reason, _ in AGENT_REFUSED]
)
def test_same_agent_refusal(mlflow_side, chatmodels_side, index):
    from chatmodels.exceptions import ChatModelsError

    model, reason, request = AGENT_REFUSED[index]
    assert mlflow_side["agent_refusals"][index] is not None, f"MLflow accepts {reason}"
    with pytest.raises(ChatModelsError):
        chatmodels_side(model, request, False)
