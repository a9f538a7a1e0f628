"""The MLflow side of test_parity.py, run in MLflow's own Python:

    MLFLOW_PYTHON mlflow_side.py WORK_DIR < calls.json > answers.json

Reads `{"calls": [[model, request, stream], ...], "refused": [[reason, request], ...]}`. Each
model of models/ (importing `parity_types` from sides/mlflow) is saved with
`mlflow.pyfunc.save_model` (with its INPUT_EXAMPLE) into WORK_DIR and loaded with
`mlflow.pyfunc.load_model`, then called with `predict` / `predict_stream`. Writes
`{"answers": [...], "refusals": [error or null, ...]}` (the refused requests go to basic_params).
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
from parity_types import ChatModel  # noqa: E402


def load(name: str):
    module = __import__(name)
    model_class = next(
        value
        for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, ChatModel) and value is not ChatModel
    )
    path = Path(tempfile.mkdtemp(dir=sys.argv[1])) / "model"
    mlflow.pyfunc.save_model(path, python_model=model_class(), input_example=module.INPUT_EXAMPLE)
    return mlflow.pyfunc.load_model(str(path))


def main() -> None:
    job = json.load(sys.stdin)
    loaded = {name: load(name) for name in sorted({call[0] for call in job["calls"]})}

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
    json.dump({"answers": answers, "refusals": refusals}, sys.stdout)


if __name__ == "__main__":
    main()
