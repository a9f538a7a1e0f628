"""Output shapes of the registry API, and the chat request/response schemas for the OpenAPI docs.

Chat requests are validated by `ChatRequest.from_dict` (the executable form of the signature,
with errors that name the field); the schemas here only describe them.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from chatmodels.models import ModelVersion, RegisteredModel
from chatmodels.signature import REQUEST_SCHEMA, RESPONSE_SCHEMA


def _openapi(schema: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in schema.items() if key != "$schema"}


CHAT_REQUEST_SCHEMA = _openapi(
    {
        **REQUEST_SCHEMA,
        "properties": {
            "model": {
                "type": "string",
                "description": "`name`, `name/VERSION` or `name@ALIAS` (/v1/chat/completions).",
            },
            **REQUEST_SCHEMA["properties"],
            "stream_options": {
                "type": ["object", "null"],
                "properties": {"include_usage": {"type": "boolean"}},
            },
        },
    }
)
CHAT_RESPONSE_SCHEMA = _openapi(RESPONSE_SCHEMA)
CHAT_STREAM_SCHEMA = {
    "type": "string",
    "description": "Server-sent events: `data: {chat.completion.chunk}`, then `data: [DONE]`.",
}
ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
            "required": ["message", "type", "param", "code"],
        }
    },
    "required": ["error"],
}
OPENAI_MODEL_LIST_SCHEMA = {
    "type": "object",
    "properties": {
        "object": {"type": "string", "enum": ["list"]},
        "data": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "object": {"type": "string", "enum": ["model"]},
                    "created": {"type": "integer"},
                    "owned_by": {"type": "string"},
                },
                "required": ["id", "object", "created", "owned_by"],
            },
        },
    },
    "required": ["object", "data"],
}


class RegisteredModelSerializer(serializers.ModelSerializer):
    """A model; expects `selectors.list_models()` rows (latest_version annotated, prefetches)."""

    tags = serializers.SerializerMethodField()
    aliases = serializers.SerializerMethodField()
    latest_version = serializers.IntegerField(allow_null=True, read_only=True)

    class Meta:
        model = RegisteredModel
        fields = (
            "name",
            "description",
            "tags",
            "aliases",
            "latest_version",
            "created_at",
            "updated_at",
        )

    @extend_schema_field({"type": "object", "additionalProperties": {"type": "string"}})
    def get_tags(self, model: RegisteredModel) -> dict[str, str]:
        return {tag.key: tag.value for tag in model.tags.all()}

    @extend_schema_field({"type": "object", "additionalProperties": {"type": "integer"}})
    def get_aliases(self, model: RegisteredModel) -> dict[str, int]:
        return {alias.name: alias.version.version for alias in model.aliases.all()}


class ModelVersionSerializer(serializers.ModelSerializer):
    """A version; expects `selectors.list_versions()` rows (model selected, aliases prefetched)."""

    name = serializers.CharField(source="model.name", read_only=True)
    aliases = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = (
            "name",
            "version",
            "status",
            "aliases",
            "signature",
            "input_example",
            "digest",
            "size",
            "class_path",
            "artifacts",
            "created_at",
            "created_by",
            "python_version",
            "package_versions",
        )

    def get_aliases(self, version: ModelVersion) -> list[str]:
        return sorted(alias.name for alias in version.aliases.all())
