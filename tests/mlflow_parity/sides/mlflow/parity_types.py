"""The MLflow side's `parity_types`: what tests/mlflow_parity/models import."""

from mlflow.pyfunc import ChatAgent, ChatModel, ResponsesAgent  # noqa: F401
from mlflow.types.agent import (  # noqa: F401
    ChatAgentChunk,
    ChatAgentMessage,
    ChatAgentResponse,
    ChatContext,
)
from mlflow.types.llm import *  # noqa: F403
from mlflow.types.responses import (  # noqa: F401
    ResponsesAgentRequest,
    ResponsesAgentResponse,
    ResponsesAgentStreamEvent,
)
