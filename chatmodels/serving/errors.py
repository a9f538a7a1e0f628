"""A domain error as OpenAI's error object, and as the HTTP answer that carries it.

Shared by the chat pipeline (a stream's last event), the API's exception handler and the admin
playground, so every door answers an error in one shape.
"""

from __future__ import annotations

import json

from django.http import HttpResponse

from chatmodels.exceptions import ChatModelsError


def error_body(error: ChatModelsError) -> dict:
    """OpenAI's error object for `error`: `{"error": {message, type, param, code}}`."""
    return {
        "error": {
            "message": error.message,
            "type": error.type,
            "param": error.param,
            "code": error.code,
        }
    }


def error_response(error: ChatModelsError, headers: dict[str, str] | None = None) -> HttpResponse:
    """The HTTP answer to `error`: its status, its headers (e.g. Retry-After), its error object."""
    return HttpResponse(
        json.dumps(error_body(error)),
        status=error.status_code,
        content_type="application/json",
        headers={**error.headers, **(headers or {})},
    )
