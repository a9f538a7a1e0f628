"""The baseline: examples/echo.py written against MLflow's `mlflow.pyfunc.ChatModel`.

It answers the last user message, word for word, with the same usage counts as chatmodels' echo
model; saved with a SLEEP, it first waits that many seconds with `time.sleep` (as if for an
upstream LLM), like bench/models.py's SleepModel.

    python bench/mlflow_model.py OUT_DIR [SLEEP]

saves it with `mlflow.pyfunc.save_model` (models from code), ready for
`mlflow models serve -m OUT_DIR`. Runs only in the MLflow venv (bench/.venv-mlflow).
"""

import sys
import time

import mlflow
from mlflow.models import set_model
from mlflow.pyfunc import ChatModel
from mlflow.types.llm import ChatChoice, ChatCompletionResponse, ChatMessage, TokenUsageStats


class EchoModel(ChatModel):
    def load_context(self, context):
        self.sleep = float((context.model_config or {}).get("sleep", 0))

    def predict(self, context, messages, params) -> ChatCompletionResponse:
        if self.sleep:
            time.sleep(self.sleep)
        text = (messages[-1].content or "") if messages else ""
        words = len(text.split())
        return ChatCompletionResponse(
            choices=[ChatChoice(message=ChatMessage(role="assistant", content=text))],
            usage=TokenUsageStats(
                prompt_tokens=words, completion_tokens=words, total_tokens=2 * words
            ),
        )


set_model(EchoModel())

if __name__ == "__main__":
    # Models from code: MLflow stores this file and runs it (set_model above) when it loads.
    mlflow.pyfunc.save_model(
        path=sys.argv[1],
        python_model=__file__,
        model_config={"sleep": float(sys.argv[2]) if len(sys.argv) > 2 else 0.0},
        pip_requirements=[f"mlflow=={mlflow.__version__}"],  # skip requirement inference
    )
    print(f"saved the MLflow echo model to {sys.argv[1]}")
