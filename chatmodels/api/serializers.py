"""Output shapes of the registry API (models, versions, usage rows) and the usage query."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from chatmodels.exceptions import INVALID_REQUEST, MODEL_ERROR, REJECTED, TIMEOUT
from chatmodels.models import ModelVersion, RegisteredModel
from chatmodels.selectors import USAGE_BUCKETS


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
            "interface",
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
        source="sum_invalid_requests", help_text=INVALID_REQUEST.description
    )
    rejected = serializers.IntegerField(source="sum_rejected", help_text=REJECTED.description)
    model_error = serializers.IntegerField(
        source="sum_model_errors", help_text=MODEL_ERROR.description
    )
    timeout = serializers.IntegerField(source="sum_timeouts", help_text=TIMEOUT.description)


class UsageRowSerializer(serializers.Serializer):
    """One row of `GET /api/usage/`: a model version's use by one key in one hour or day."""

    start = serializers.DateTimeField(help_text="start of the hour or day (UTC)")
    bucket = serializers.SerializerMethodField()
    model = serializers.CharField(source="model_name")
    version = serializers.IntegerField(source="version_number")
    key = serializers.SerializerMethodField()
    requests = serializers.IntegerField(source="sum_requests")
    # A field: DRF's metaclass takes it out of the class, so Serializer.errors is untouched.
    errors = serializers.IntegerField(source="sum_errors")  # type: ignore[assignment]
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
