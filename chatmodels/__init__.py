"""chatmodels: write a ChatModel, register it, serve it OpenAI-compatibly.

Importing this package needs no Django settings: it exposes only the typed chat API.
"""

from chatmodels.base import ChatModel, ModelContext
from chatmodels.types import *  # noqa: F403
from chatmodels.types import __all__ as _type_names
from chatmodels.upstream import UpstreamError

__all__ = ["ChatModel", "ModelContext", "UpstreamError", *_type_names]
__version__ = "0.1.0"  # the release; pyproject.toml and the API schema read it here
