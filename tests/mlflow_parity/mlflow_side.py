"""The MLflow side of test_parity.py, run in MLflow's own Python:

    MLFLOW_PYTHON mlflow_side.py WORK_DIR < calls.json > answers.json

Reads `{"calls": [[model, request, stream], ...], "refused": [[reason, request], ...],
"agent_refused": [[model, reason, request], ...]}` (ChatModels, ResponsesAgents, ChatAgents).
Each model of models/ (importing `parity_types` from sides/mlflow) is saved with
`mlflow.pyfunc.save_model` (with its INPUT_EXAMPLE) into WORK_DIR and loaded with
`mlflow.pyfunc.load_model`, then called with `predict` / `predict_stream`. Writes
`{"answers": [...], "refusals": [error or null, ...], "agent_refusals": [...]}` (the refused
requests go to basic_params, the agents' to their model).
"""

import json
import logging
import sys
import tempfile
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE / "sides" / "mlflow"), str(HERE / "models")]
warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)

import mlflow  # noqa: E402
from parity_types import ChatAgent, ChatModel, ResponsesAgent  # noqa: E402

MODEL_BASES = (ChatModel, ResponsesAgent, ChatAgent)


def load(name: str):
    module = __import__(name)
    model_class = next(
        value
        for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, MODEL_BASES) and value not in MODEL_BASES
    )
    path = Path(tempfile.mkdtemp(dir=sys.argv[1])) / "model"
    mlflow.pyfunc.save_model(path, python_model=model_class(), input_example=module.INPUT_EXAMPLE)
    return mlflow.pyfunc.load_model(str(path))


def main() -> None:
    job = json.load(sys.stdin)
    names = {call[0] for call in job["calls"]} | {r[0] for r in job.get("agent_refused", [])}
    loaded = {name: load(name) for name in sorted(names)}

    def run(name, request, stream):
        if stream:
            return list(loaded[name].predict_stream(request))
        return loaded[name].predict(request)

    answers = [run(*call) for call in job["calls"]]
    refusals = []
    for _reason, request in job["refused"]:
        try:
            run("basic_params", request, False)
            refusals.append(None)
        except Exception as error:
            refusals.append(f"{type(error).__name__}: {error}")
    agent_refusals = []
    for name, _reason, request in job.get("agent_refused", []):
        try:
            run(name, request, False)
            agent_refusals.append(None)
        except Exception as error:
            agent_refusals.append(f"{type(error).__name__}: {error}")
    json.dump(
        {"answers": answers, "refusals": refusals, "agent_refusals": agent_refusals}, sys.stdout
    )


if __name__ == "__main__":
    main()
