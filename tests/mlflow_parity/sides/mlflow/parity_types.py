"""The MLflow side's `parity_types`: what tests/mlflow_parity/models import."""

from mlflow.pyfunc import ChatModel  # noqa: F401
from mlflow.types.llm import *  # noqa: F403
