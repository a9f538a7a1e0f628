"""The slow-model baseline: bench/models.py's SleepModel as an `mlflow.pyfunc.ChatModel`.

It waits 500 ms (as if for an upstream LLM) with `time.sleep`, then answers the last user
message, word for word, like the echo model. `python bench/mlflow_sleep.py OUT_DIR` saves it
with `mlflow.pyfunc.save_model` (models from code), ready for `mlflow models serve -m OUT_DIR`.
Runs only in the MLflow venv (bench/.venv-mlflow), never in the project's.
"""

import sys
import time

import mlflow
from mlflow.models import set_model
from mlflow.pyfunc import ChatModel
from mlflow.types.llm import ChatChoice, ChatCompletionResponse, ChatMessage, TokenUsageStats

SLEEP = 0.5  # seconds, as bench/models.py's SleepModel


def _last_text(messages) -> str:
    content = messages[-1].content if messages else ""
    if isinstance(content, list):  # content parts: keep the text ones
        return " ".join(part.text for part in content if getattr(part, "type", "") == "text")
    return content or ""


class SleepModel(ChatModel):
    def predict(self, context, messages, params) -> ChatCompletionResponse:
        time.sleep(SLEEP)
        text = _last_text(messages)
        words = len(text.split())
        return ChatCompletionResponse(
            choices=[ChatChoice(message=ChatMessage(role="assistant", content=text))],
            usage=TokenUsageStats(
                prompt_tokens=words, completion_tokens=words, total_tokens=2 * words
            ),
        )


set_model(SleepModel())

if __name__ == "__main__":
    # Models from code: MLflow stores this file and runs it (set_model above) when it loads.
    mlflow.pyfunc.save_model(
        path=sys.argv[1],
        python_model=__file__,
        pip_requirements=[f"mlflow=={mlflow.__version__}"],  # skip requirement inference
    )
    print(f"saved the MLflow sleep model to {sys.argv[1]}")
