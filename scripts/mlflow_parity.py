"""Run the same ChatModels under MLflow and under chatmodels, with only the imports changed, and
diff the answers.

    .venv/bin/python scripts/mlflow_parity.py [--mlflow-python PATH]

MLflow side: in MLflow's own Python (default bench/.venv-mlflow/bin/python, as bench/run.sh
installs it; or $MLFLOW_PYTHON), each model is saved with `mlflow.pyfunc.save_model` (with its
input example) and loaded with `mlflow.pyfunc.load_model`, then called with `predict` /
`predict_stream`. chatmodels side: in a throwaway install (temp SQLite database and package
directory), each model is registered with `services.register_model` (with the same input
example) and invoked through `runtime.invoke` / `runtime.invoke_stream`, as the HTTP API does.
Requests MLflow refuses must be refused by chatmodels too.

Ignored in the diff: `id`, `created` and `model` (made per call or per server), `null` values
(the OpenAI format spells out some that MLflow leaves out; `custom_outputs`, the model's own
data, is compared as it is), and the `index` of streamed tool
calls (the OpenAI stream format requires it; MLflow's deltas carry whole tool calls without it).
Exits non-zero when an answer differs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MLFLOW_PYTHON = REPO / "bench" / ".venv-mlflow" / "bin" / "python"

# The only lines that differ between the two sides.
IMPORTS = {
    "mlflow": (
        "from mlflow.pyfunc import ChatModel\n"
        "from mlflow.types.llm import (ChatChoice, ChatChoiceDelta, ChatChunkChoice,"
        " ChatCompletionChunk, ChatCompletionResponse, ChatMessage, FunctionToolCallArguments,"
        " TokenUsageStats)\n"
    ),
    "chatmodels": (
        "from chatmodels import ChatModel\n"
        "from chatmodels import (ChatChoice, ChatChoiceDelta, ChatChunkChoice,"
        " ChatCompletionChunk, ChatCompletionResponse, ChatMessage, FunctionToolCallArguments,"
        " TokenUsageStats)\n"
    ),
}

# Example ChatModels, as an MLflow author writes them. INPUT_EXAMPLE is what the model is saved
# (MLflow) or registered (chatmodels) with.
MODELS = {
    "basic_params": """
        import json

        INPUT_EXAMPLE = {"messages": [{"role": "user", "content": "Hello!"}], "temperature": 0.5}


        class ParamsModel(ChatModel):
            def predict(self, context, messages, params):
                seen = {
                    "roles": [m.role for m in messages],
                    "temperature": params.temperature,
                    "max_tokens": params.max_tokens,
                    "stop": params.stop,
                    "n": params.n,
                    "top_p": params.top_p,
                    "custom_inputs": params.custom_inputs,
                }
                return ChatCompletionResponse(
                    choices=[
                        ChatChoice(
                            message=ChatMessage(role="assistant", content=json.dumps(seen)),
                            finish_reason="length",
                        )
                    ],
                    usage=TokenUsageStats(prompt_tokens=3, completion_tokens=5, total_tokens=8),
                    custom_outputs={"echo": params.custom_inputs, "nothing": None},
                )
    """,
    "streaming": """
        INPUT_EXAMPLE = [ChatMessage(role="user", content="one two three")]


        class WordStreamModel(ChatModel):
            def _words(self, messages):
                return messages[-1].content.split()

            def predict(self, context, messages, params):
                text = " ".join(self._words(messages))
                return ChatCompletionResponse(
                    choices=[ChatChoice(message=ChatMessage(role="assistant", content=text))]
                )

            def predict_stream(self, context, messages, params):
                for i, word in enumerate(self._words(messages)):
                    yield ChatCompletionChunk(
                        choices=[
                            ChatChunkChoice(
                                delta=ChatChoiceDelta(content=word if i == 0 else " " + word)
                            )
                        ]
                    )
                yield ChatCompletionChunk(
                    choices=[ChatChunkChoice(delta=ChatChoiceDelta(), finish_reason="stop")]
                )
    """,
    "tool_calling": """
        import json

        INPUT_EXAMPLE = (
            [ChatMessage(role="user", content="Weather in Oslo?")],
            {"temperature": 0.0},
        )


        class ToolModel(ChatModel):
            def predict(self, context, messages, params):
                if not params.tools:
                    message = ChatMessage(role="assistant", content="no tools")
                    return ChatCompletionResponse(choices=[ChatChoice(message=message)])
                function = params.tools[0].function
                arguments = {}
                for name, prop in function.parameters.properties.items():
                    # ParamProperty: attributes, nested items
                    if prop.type == "array":
                        arguments[name] = [prop.items.type, type(prop.items).__name__]
                    elif prop.enum:
                        arguments[name] = prop.enum[0]
                    else:
                        arguments[name] = f"{prop.type}: {prop.description}"
                call = FunctionToolCallArguments(
                    name=function.name, arguments=json.dumps(arguments)
                ).to_tool_call(id="call_1")
                return ChatCompletionResponse(
                    choices=[
                        ChatChoice(
                            message=ChatMessage(role="assistant", tool_calls=[call]),
                            finish_reason="tool_calls",
                        )
                    ]
                )
    """,
    "contextless": """
        INPUT_EXAMPLE = {"messages": [{"role": "user", "content": "Hi"}]}


        class ContextlessModel(ChatModel):
            def predict(self, messages, params):
                text = f"{len(messages)} message(s), n={params.n}"
                message = ChatMessage(role="assistant", content=text)
                return ChatCompletionResponse(choices=[ChatChoice(message=message)])

            def predict_stream(self, messages, params):
                for piece in ["no ", "context"]:
                    yield ChatCompletionChunk(
                        choices=[ChatChunkChoice(delta=ChatChoiceDelta(content=piece))]
                    )
    """,
    "stream_custom_outputs": """
        INPUT_EXAMPLE = {"messages": [{"role": "user", "content": "Hi"}]}


        class TracedStreamModel(ChatModel):
            def predict(self, context, messages, params):
                return ChatCompletionResponse(
                    choices=[ChatChoice(message=ChatMessage(role="assistant", content="done"))],
                    custom_outputs={"trace_id": "t-1"},
                )

            def predict_stream(self, context, messages, params):
                yield ChatCompletionChunk(
                    choices=[ChatChunkChoice(delta=ChatChoiceDelta(role="assistant", content="do"))]
                )
                yield ChatCompletionChunk(
                    choices=[ChatChunkChoice(delta=ChatChoiceDelta(content="ne"))],
                    custom_outputs={"trace_id": "t-1", "step": 2, "parent": None},
                )
    """,
    "stream_tool_call": """
        INPUT_EXAMPLE = {"messages": [{"role": "user", "content": "Hi"}]}


        class StreamedToolCallModel(ChatModel):
            def predict(self, context, messages, params):
                call = FunctionToolCallArguments(name="lookup", arguments="{}").to_tool_call("c1")
                return ChatCompletionResponse(
                    choices=[
                        ChatChoice(
                            message=ChatMessage(role="assistant", tool_calls=[call]),
                            finish_reason="tool_calls",
                        )
                    ]
                )

            def predict_stream(self, context, messages, params):
                call = FunctionToolCallArguments(name="lookup", arguments='{"q": 1}').to_tool_call(
                    "c1"
                )
                yield ChatCompletionChunk(
                    choices=[ChatChunkChoice(delta=ChatChoiceDelta(tool_calls=[call]))]
                )
                yield ChatCompletionChunk(
                    choices=[ChatChunkChoice(delta=ChatChoiceDelta(), finish_reason="tool_calls")]
                )
    """,
}

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "City name"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                    # MLflow's signature allows only `type` in `items`.
                    "days": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["city"],
            },
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
]

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

MLFLOW_RUNNER = """
import importlib.util, json, sys, tempfile, warnings
warnings.filterwarnings("ignore")
import logging
logging.disable(logging.WARNING)
import mlflow

work, calls, refused = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
sys.path.insert(0, work)
loaded = {}
for name in sorted({call[0] for call in calls}):
    module = __import__(name)
    model_class = next(
        value for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, module.ChatModel)
        and value is not module.ChatModel
    )
    path = tempfile.mkdtemp(dir=work) + "/model"
    mlflow.pyfunc.save_model(path, python_model=model_class(), input_example=module.INPUT_EXAMPLE)
    loaded[name] = mlflow.pyfunc.load_model(path)

def run(name, request, stream):
    model = loaded[name]
    if stream:
        return list(model.predict_stream(json.loads(json.dumps(request))))
    return model.predict(json.loads(json.dumps(request)))

answers = [run(*call) for call in calls]
refusals = []
for _reason, request in refused:
    try:
        run("basic_params", request, False)
        refusals.append(None)
    except Exception as error:
        refusals.append(f"{type(error).__name__}: {error}")
print(json.dumps({"answers": answers, "refusals": refusals}))
"""


def write_models(work: Path, side: str) -> None:
    for name, source in MODELS.items():
        (work / f"{name}.py").write_text(IMPORTS[side] + textwrap.dedent(source))


def run_mlflow(python: Path, work: Path) -> dict[str, Any]:
    write_models(work, "mlflow")
    result = subprocess.run(
        [str(python), "-c", MLFLOW_RUNNER, str(work), json.dumps(CALLS), json.dumps(REFUSED)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "MLFLOW_TRACKING_URI": (work / "mlruns").as_uri()},
    )
    if result.returncode != 0:
        sys.exit(f"the MLflow side failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_chatmodels(work: Path) -> dict[str, Any]:
    write_models(work, "chatmodels")
    os.environ.update(
        DJANGO_SETTINGS_MODULE="project.settings",
        ENV_FILE="",
        DEBUG="true",
        DATABASE_URL=f"sqlite:///{work / 'db.sqlite3'}",
        CHATMODELS_PACKAGE_DIR=str(work / "packages"),
        CHATMODELS_CACHE_DIR=str(work / "cache"),
        LOG_LEVEL="WARNING",
    )
    sys.path.insert(0, str(REPO))
    import django

    django.setup()
    from django.core.management import call_command

    from chatmodels import selectors, services
    from chatmodels.exceptions import ChatModelsError
    from chatmodels.serving import runtime
    from chatmodels.types import ChatRequest

    call_command("migrate", verbosity=0)
    sys.path.insert(0, str(work))
    for name in sorted({call[0] for call in CALLS}):
        module = __import__(name)
        model_class = next(
            value
            for value in vars(module).values()
            if isinstance(value, type)
            and issubclass(value, module.ChatModel)
            and value is not module.ChatModel
        )
        services.register_model(
            name.replace("_", "-"), model_class, input_example=module.INPUT_EXAMPLE
        )

    def run(name: str, request: dict[str, Any], stream: bool) -> Any:
        version = selectors.resolve_version(name=name.replace("_", "-"), version=None, alias=None)
        chat_request = ChatRequest.from_dict(json.loads(json.dumps(request)))
        if stream:
            chunks = runtime.invoke_stream(version, chat_request, served_name=name)
            return [chunk for chunk in chunks if chunk is not runtime.KEEP_ALIVE]
        return runtime.invoke(version, chat_request, served_name=name)

    answers = [run(*call) for call in CALLS]
    refusals = []
    for _reason, request in REFUSED:
        try:
            run("basic_params", request, False)
            refusals.append(None)
        except ChatModelsError as error:
            refusals.append(f"{type(error).__name__}: {error}")
    return {"answers": answers, "refusals": refusals}


def normalized(value: Any, key: str = "") -> Any:
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--mlflow-python",
        type=Path,
        default=Path(os.environ.get("MLFLOW_PYTHON") or DEFAULT_MLFLOW_PYTHON),
        help="the Python of a venv with mlflow installed (default: %(default)s)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="print every answer")
    options = parser.parse_args()
    if not options.mlflow_python.exists():
        sys.exit(
            f"{options.mlflow_python} not found: run bench/run.sh once, or pass --mlflow-python"
        )

    with tempfile.TemporaryDirectory(prefix="mlflow-parity-") as temp:
        (Path(temp) / "mlflow").mkdir()
        (Path(temp) / "chatmodels").mkdir()
        theirs = run_mlflow(options.mlflow_python, Path(temp) / "mlflow")
        ours = run_chatmodels(Path(temp) / "chatmodels")

    differences = 0
    for (name, _request, stream), mlflow_answer, our_answer in zip(
        CALLS, theirs["answers"], ours["answers"], strict=True
    ):
        label = f"{name} ({'predict_stream' if stream else 'predict'})"
        if normalized(mlflow_answer) == normalized(our_answer):
            print(f"same       {label}")
            if options.verbose:
                print(f"  both:       {json.dumps(normalized(our_answer))}")
        else:
            differences += 1
            print(f"DIFFERENT  {label}")
            print(f"  mlflow:     {json.dumps(normalized(mlflow_answer))}")
            print(f"  chatmodels: {json.dumps(normalized(our_answer))}")
    for (reason, _request), mlflow_error, our_error in zip(
        REFUSED, theirs["refusals"], ours["refusals"], strict=True
    ):
        if (mlflow_error is None) == (our_error is None):
            verdict = "both refuse" if our_error else "both accept"
            print(f"same       {reason}: {verdict}")
            if our_error:
                print(f"  mlflow:     {mlflow_error.splitlines()[0][:150]}")
                print(f"  chatmodels: {our_error.splitlines()[0][:150]}")
        else:
            differences += 1
            print(f"DIFFERENT  {reason}: mlflow {mlflow_error!r}, chatmodels {our_error!r}")
    total = len(CALLS) + len(REFUSED)
    print(f"\n{total - differences} of {total} the same under MLflow and chatmodels")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
