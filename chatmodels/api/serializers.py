"""Output shapes of the registry API, and the chat request/response schemas for the OpenAPI docs.

Chat requests are validated by `ChatRequest.from_dict` (the executable form of the signature,
with errors that name the field); the schemas here only describe them.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from chatmodels.models import ModelVersion, RegisteredModel
from chatmodels.selectors import MAX_VERSION, USAGE_BUCKETS
from chatmodels.signature import REQUEST_SCHEMA, RESPONSE_SCHEMA


def _openapi(schema: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in schema.items() if key != "$schema"}


_STREAM_OPTIONS = {
    "type": ["object", "null"],
    "description": "With stream: `include_usage` adds a last chunk carrying `usage`.",
    "properties": {"include_usage": {"type": "boolean"}},
}
# What `selectors.parse_model_reference` accepts: `name`, `name/VERSION` or `name@ALIAS`.
MODEL_REFERENCE_SCHEMA = {
    "type": "string",
    "pattern": r"^[^/@]+(/[1-9][0-9]{0,8}|@[^/@]+)?$",
    "description": "`name` (the latest version), `name/VERSION` or `name@ALIAS`.",
    "example": "echo",
}
VERSION_NUMBER_SCHEMA = {"type": "integer", "minimum": 1, "maximum": MAX_VERSION, "example": 1}

# The invocations route: the chat request of the signature (a `model` key is ignored there).
CHAT_REQUEST_SCHEMA = _openapi(
    {
        **REQUEST_SCHEMA,
        "properties": {**REQUEST_SCHEMA["properties"], "stream_options": _STREAM_OPTIONS},
    }
)
# /v1/chat/completions: the same, and `model` says which model answers.
CHAT_COMPLETIONS_REQUEST_SCHEMA = {
    **CHAT_REQUEST_SCHEMA,
    "properties": {"model": MODEL_REFERENCE_SCHEMA, **CHAT_REQUEST_SCHEMA["properties"]},
    "required": ["model", *CHAT_REQUEST_SCHEMA["required"]],
}
CHAT_RESPONSE_SCHEMA = _openapi(RESPONSE_SCHEMA)
# One server-sent event (OpenAPI 3.2's model of text/event-stream: `schema` is one event).
CHAT_STREAM_SCHEMA = {
    "type": "object",
    "description": "Server-sent events: `data: {chat.completion.chunk}`, then `data: [DONE]`; "
    "a stream that fails after it started ends with `data: {error object}` instead.",
    "properties": {
        "data": {
            "type": "string",
            "description": "A JSON chat.completion.chunk, a JSON error object, or `[DONE]`.",
        },
        "event": {"type": "string", "enum": ["message"]},
    },
    "required": ["data"],
}
# One event of a /v1/responses stream: `event: <type>` and its JSON `data`.
RESPONSE_EVENT_SCHEMA = {
    "type": "object",
    "description": "Server-sent events, typed (`response.created` … `response.output_text.delta` "
    "… `response.completed`), each with its `sequence_number`; a failure ends the stream with "
    "`error` and `response.failed`.",
    "properties": {
        "event": {"type": "string", "description": "The event's `type`."},
        "data": {"type": "string", "description": "The event, as JSON."},
    },
    "required": ["event", "data"],
}
OPENAI_MODEL_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "object": {"type": "string", "enum": ["model"]},
        "created": {"type": "integer"},
        "owned_by": {"type": "string"},
    },
    "required": ["id", "object", "created", "owned_by"],
}
OPENAI_MODEL_LIST_SCHEMA = {
    "type": "object",
    "properties": {
        "object": {"type": "string", "enum": ["list"]},
        "data": {"type": "array", "items": OPENAI_MODEL_SCHEMA},
    },
    "required": ["object", "data"],
}
HEALTH_SCHEMA = {
    "type": "object",
    "properties": {"status": {"type": "string", "enum": ["ok"]}},
    "required": ["status"],
}
READY_SCHEMA = {
    "type": "object",
    "properties": {
        "status": {"type": "string", "enum": ["ready"]},
        "checks": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "required": ["status", "checks"],
}
VERSION_SCHEMA = {
    "type": "object",
    "properties": {
        "chatmodels": {"type": "string"},
        "python": {"type": "string"},
        "django": {"type": "string"},
    },
    "required": ["chatmodels", "python", "django"],
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


_RFC3339 = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})\Z"
)


class Rfc3339DateTimeField(serializers.DateTimeField):
    """A date-time with its offset, as RFC 3339 (and so OpenAPI's `format: date-time`) says."""

    def to_internal_value(self, value: Any) -> datetime:
        if not isinstance(value, str) or not _RFC3339.match(value):
            self.fail("invalid", format="RFC 3339, e.g. 2026-11-29T10:00:00Z")
        try:
            return super().to_internal_value(value.upper()).astimezone(timezone.utc)
        except OverflowError:  # a valid date-time that is out of range once in UTC
            self.fail("invalid", format="RFC 3339, e.g. 2026-11-29T10:00:00Z")


class UsageQuerySerializer(serializers.Serializer):
    """The query of `GET /api/usage/`."""

    model = serializers.CharField(required=False, max_length=128, help_text="a model name")
    key = serializers.CharField(
        required=False,
        max_length=16,
        help_text="an API key's prefix (staff; a key may only name itself)",
    )
    since = Rfc3339DateTimeField(
        required=False, help_text="RFC 3339, e.g. 2026-11-29T10:00:00Z; the first hour counted"
    )
    until = Rfc3339DateTimeField(
        required=False, help_text="RFC 3339; counting stops before this hour"
    )
    bucket = serializers.ChoiceField(
        choices=USAGE_BUCKETS, default="hour", help_text="add up per hour or per UTC day"
    )

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        since, until = data.get("since"), data.get("until")
        if since is not None and until is not None and since >= until:
            raise serializers.ValidationError({"until": "must be later than since"})
        return data


class UsageErrorsSerializer(serializers.Serializer):
    invalid_request = serializers.IntegerField(
        source="sum_invalid_requests", help_text="4xx but 429: bad input, a model not allowed"
    )
    rejected = serializers.IntegerField(
        source="sum_rejected", help_text="429 limits and 503 capacity: may be retried"
    )
    model_error = serializers.IntegerField(
        source="sum_model_errors", help_text="500/502: the model raised or answered wrongly"
    )
    timeout = serializers.IntegerField(source="sum_timeouts", help_text="504")


class UsageRowSerializer(serializers.Serializer):
    """One row of `GET /api/usage/`: a model version's use by one key in one hour or day."""

    start = serializers.DateTimeField(help_text="start of the hour or day (UTC)")
    bucket = serializers.SerializerMethodField()
    model = serializers.CharField(source="model_name")
    version = serializers.IntegerField(source="version_number")
    key = serializers.SerializerMethodField()
    requests = serializers.IntegerField(source="sum_requests")
    errors = serializers.IntegerField(source="sum_errors")
    errors_by_kind = UsageErrorsSerializer(source="*")
    prompt_tokens = serializers.IntegerField(source="sum_prompt_tokens")
    completion_tokens = serializers.IntegerField(source="sum_completion_tokens")
    total_tokens = serializers.SerializerMethodField()
    latency_ms_avg = serializers.SerializerMethodField()
    latency_ms_max = serializers.IntegerField(source="max_latency_ms")

    @extend_schema_field({"type": "string", "enum": list(USAGE_BUCKETS)})
    def get_bucket(self, row: dict[str, Any]) -> str:
        return self.context["bucket"]

    @extend_schema_field(
        {
            "oneOf": [
                {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "prefix": {"type": "string"}},
                },
                {"type": "null"},
            ],
            "description": "the API key, or null for calls without one (admin playground, "
            "anonymous)",
        }
    )
    def get_key(self, row: dict[str, Any]) -> dict[str, str] | None:
        if row["key_id"] is None:
            return None
        return {"name": row["key_name"], "prefix": row["key_prefix"]}

    def get_total_tokens(self, row: dict[str, Any]) -> int:
        return row["sum_prompt_tokens"] + row["sum_completion_tokens"]

    def get_latency_ms_avg(self, row: dict[str, Any]) -> float:
        requests = row["sum_requests"]
        return round(row["sum_latency_ms_sum"] / requests, 1) if requests else 0.0
