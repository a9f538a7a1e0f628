"""drf-spectacular: the API-key security scheme, and error responses generated from exceptions.

Each view declares the domain exceptions it raises with `@raises(...)` (on the view class, for
all its operations, or on one method); the statuses a view's own configuration brings (401 for
authentication, 429 for throttles, its paginator's, 404 for path values no URL pattern takes)
are added from that configuration.
Every status, OpenAI `type`, `code` and description in the schema comes from the exception
classes (chatmodels/exceptions.py), so the docs cannot drift from what the handler answers.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent
from drf_spectacular.utils import Direction

from chatmodels.exceptions import (
    ChatModelsError,
    NotFound,
    Throttled,
    Unauthenticated,
    declared_errors,
)

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "OpenAI's error object.",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "message": {"type": "string", "description": "What went wrong, for people."},
                "type": {"type": "string"},
                "param": {
                    "type": ["string", "null"],
                    "description": "The request field at fault, when there is one.",
                },
                "code": {"type": ["string", "null"]},
            },
            "required": ["message", "type", "param", "code"],
        }
    },
    "required": ["error"],
}


def error_responses(error_classes: Iterable[type[ChatModelsError]], ref: dict) -> dict[str, Any]:
    """OpenAPI responses, one per status, each listing its codes and when they happen."""
    by_status: dict[int, list[type[ChatModelsError]]] = {}
    for error_class in error_classes:
        by_status.setdefault(error_class.status_code, []).append(error_class)
    responses = {}
    for status, classes in sorted(by_status.items()):
        types = list(dict.fromkeys(cls.type for cls in classes))
        codes = list(dict.fromkeys(cls.code for cls in classes))
        first = classes[0]
        responses[str(status)] = {
            "description": "\n".join(f"- `{cls.code}`: {_when(cls)}" for cls in classes),
            "content": {
                "application/json": {
                    "schema": {
                        # An ErrorResponse, narrowed to this status's types and codes.
                        "allOf": [ref],
                        "type": "object",
                        "required": ["error"],
                        "properties": {
                            "error": {
                                "properties": {
                                    "type": {"enum": types},
                                    "code": {"enum": codes},
                                }
                            }
                        },
                    },
                    "example": {
                        "error": {
                            "message": _when(first),
                            "type": first.type,
                            "param": None,
                            "code": first.code,
                        }
                    },
                }
            },
        }
    return responses


def _when(error_class: type[ChatModelsError]) -> str:
    """The first paragraph of the class docstring, on one line."""
    # Never None: ChatModelsError has a docstring, which getdoc() finds for every subclass.
    paragraph = (inspect.getdoc(error_class) or "").split("\n\n")[0]
    return " ".join(paragraph.split())


class ChatModelsAutoSchema(AutoSchema):
    """drf-spectacular's AutoSchema, plus every error each operation can answer."""

    def _get_response_bodies(self, direction: Direction = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        component = ResolvedComponent(
            name="ErrorResponse",
            type=ResolvedComponent.SCHEMA,
            object="ErrorResponse",
            schema=ERROR_SCHEMA,
        )
        self.registry.register_on_missing(component)
        generated = error_responses(self.operation_errors(), component.ref)
        for status, response in generated.items():
            responses.setdefault(status, response)
        return responses

    def get_auth(self) -> list[dict]:
        auths = super().get_auth()
        permissions = self.view.get_permissions()
        if {} not in auths and any(_allows_anonymous(p) for p in permissions):
            auths.append({})  # OpenAPI's "no credentials" alternative
        return auths

    def _get_request_for_media_type(self, serializer, direction="request"):
        schema, required = super()._get_request_for_media_type(serializer, direction)
        if isinstance(serializer, dict) and serializer.get("required"):
            required = True  # a raw JSON Schema with required fields: the body is required too
        return schema, required

    def operation_errors(self) -> tuple[type[ChatModelsError], ...]:
        """The errors of this operation: from the view's configuration, then as declared."""
        view = self.view
        errors: list[type[ChatModelsError]] = []
        if view.get_authenticators():
            errors.append(Unauthenticated)
        if view.get_throttles():
            errors.append(Throttled)
        if "{" in self.path:
            errors.append(NotFound)  # a path value the URL patterns do not take: unknown URL
        paginator = self._get_paginator() if self._is_list_view() else None
        if paginator is not None:
            errors.extend(declared_errors(type(paginator), None))
        action = getattr(view, "action", None) or self.method.lower()
        errors.extend(declared_errors(type(view), getattr(type(view), action, None)))
        return tuple(dict.fromkeys(errors))


def _allows_anonymous(permission: Any) -> bool:
    check = getattr(permission, "allows_anonymous", None)
    return bool(check and check())


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "chatmodels.api.auth.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key from `manage.py create_api_key` or the admin.",
        }
