"""Registry tables: registered models, their immutable versions, aliases, tags and API keys;
usage buckets (requests and tokens per model, version, key and hour) and per-key limit counters."""

from __future__ import annotations

import hashlib
import json

from django.conf import settings
from django.core.files.storage import storages
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import F, Max, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from chatmodels.exceptions import (
    INVALID_REQUEST,
    MODEL_ERROR,
    REJECTED,
    TIMEOUT,
    ImmutableVersionError,
)

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z"
ALIAS_PATTERN = r"^[A-Za-z][A-Za-z0-9._-]{0,63}\Z"
RESERVED_ALIASES = frozenset({"latest"})

name_validator = RegexValidator(
    NAME_PATTERN,
    "A model name is 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit.",
)
alias_validator = RegexValidator(
    ALIAS_PATTERN,
    "An alias is 1-64 letters, digits, '.', '_' or '-', starting with a letter.",
)


def package_storage():
    return storages["packages"]


class RegisteredModelQuerySet(models.QuerySet):
    def with_latest_version(self) -> RegisteredModelQuerySet:
        """Each model with `latest_version` (its number) and `latest_version_id`: its latest ready
        version's, or None. Part of the model query (a subquery each), so free of extra queries."""
        latest = ModelVersion.objects.latest_ready(model=OuterRef("pk"))
        return self.annotate(
            latest_version=Subquery(latest.values("version")),
            latest_version_id=Subquery(latest.values("pk")),
        )


class RegisteredModel(models.Model):
    name = models.CharField(max_length=128, unique=True, validators=[name_validator])
    description = models.TextField(blank=True)
    max_concurrency = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Requests each server process runs at once on this model (a local GPU model"
        " wants 1); more wait up to CHATMODELS_QUEUE_TIMEOUT, then get 503. Empty: no limit.",
    )
    worker_replicas = models.PositiveIntegerField(
        default=1,
        validators=[MinValueValidator(1)],
        help_text="Model worker processes each server process runs for this model; requests go"
        " to the least busy one.",
    )
    worker_memory_mb = models.PositiveIntegerField(
        "worker memory limit (MiB)",
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="A model worker whose memory (RSS) goes over this many MiB is stopped and its"
        " requests fail with 502 model_crashed. Empty: no limit.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = RegisteredModelQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        verbose_name = "registered model"
        # Staff invoke models from the admin playground with this permission (viewing a model
        # is not enough); their usage is counted against their own playground key.
        permissions = [("invoke_model", "Can invoke models (the admin playground)")]

    def __str__(self) -> str:
        return self.name


class ModelTag(models.Model):
    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="tags")
    key = models.CharField(max_length=128)
    value = models.CharField(max_length=1024, blank=True)

    class Meta:
        ordering = ["key"]
        constraints = [
            models.UniqueConstraint(fields=["model", "key"], name="unique_tag_key_per_model")
        ]

    def __str__(self) -> str:
        return f"{self.key}={self.value}"


class ModelVersionQuerySet(models.QuerySet):
    """Which version "latest" means, said once for the API, the admin, the commands and selectors.

    The latest version of a model is its ready version with the highest number; archived versions
    are skipped. `selectors.resolve_version` states the same rule in the SQL of the serving hot
    path (tests/test_latest_version.py checks that the two agree).
    """

    def ready(self) -> ModelVersionQuerySet:
        return self.filter(status=ModelVersion.Status.READY)

    def latest_ready(self, *, model) -> ModelVersionQuerySet:
        """The latest ready version of `model` (a model, its id, or `OuterRef("pk")`), as a
        queryset of at most one row: `.first()` for the version, `.values(...)` for a subquery."""
        return self.filter(model=model).ready().order_by("-version")[:1]

    def next_number(self, *, model) -> int:
        """The number `model`'s next version gets: one more than its highest, of any status."""
        highest = self.filter(model=model).aggregate(highest=Max("version"))["highest"]
        return (highest or 0) + 1


class ModelVersion(models.Model):
    """One frozen, self-contained version. Content fields never change after creation."""

    class Status(models.TextChoices):
        READY = "ready", "Ready"
        ARCHIVED = "archived", "Archived (not chosen as latest)"

    # Everything but `status` is immutable; `save()` enforces it.
    CONTENT_FIELDS = (
        "model_id",
        "version",
        "class_path",
        "signature",
        "input_example",
        "model_config",
        "artifacts",
        "source_code",
        "package",
        "digest",
        "size",
        "python_version",
        "package_versions",
        "created_at",
        "created_by",
    )

    model = models.ForeignKey(RegisteredModel, on_delete=models.PROTECT, related_name="versions")
    version = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.READY)

    class Interface(models.TextChoices):
        CHAT_MODEL = "chat_model", "ChatModel"
        RESPONSES_AGENT = "responses_agent", "ResponsesAgent"
        CHAT_AGENT = "chat_agent", "ChatAgent"

    class_path = models.CharField(max_length=512, help_text="module:Class the model was built from")
    interface = models.CharField(
        max_length=16,
        choices=Interface.choices,
        default=Interface.CHAT_MODEL,
        help_text="the interface the model implements: its request and answer formats",
    )
    signature = models.JSONField(help_text='{"inputs": JSON Schema, "outputs": JSON Schema}')
    input_example = models.JSONField()
    model_config = models.JSONField(default=dict, blank=True)
    artifacts = models.JSONField(
        default=dict, blank=True, help_text="artifact name -> {path, size, sha256}"
    )
    source_code = models.TextField(blank=True, help_text="snapshot of the model's source file")
    package = models.FileField(storage=package_storage, max_length=512)
    digest = models.CharField(max_length=64, help_text="sha256 of the package, checked at load")
    size = models.BigIntegerField(help_text="package size in bytes")
    python_version = models.CharField(max_length=32)
    package_versions = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.CharField(max_length=150, blank=True)

    objects = ModelVersionQuerySet.as_manager()

    class Meta:
        ordering = ["model__name", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["model", "version"], name="unique_version_per_model"),
            models.CheckConstraint(condition=models.Q(version__gte=1), name="version_positive"),
        ]
        indexes = [models.Index(fields=["model", "status", "-version"], name="version_latest_idx")]

    def __str__(self) -> str:
        return f"{self.model.name}/{self.version}" if self.model_id else f"?/{self.version}"

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding and self.pk is not None:
            self._refuse_content_changes(kwargs.get("update_fields"))
        super().save(*args, **kwargs)

    def _refuse_content_changes(self, update_fields) -> None:
        """Compare the content this save would write with the stored row (one query).

        Comparing with the database, not with a copy taken at load time, also catches in-place
        edits of JSON values and costs nothing on the serving path, which never saves.
        """
        fields = (self._meta.get_field(name) for name in self.CONTENT_FIELDS)
        # CONTENT_FIELDS are this model's own fields, none a reverse relation (no attname).
        attnames = {field.attname: field.name for field in fields}  # type: ignore[union-attr]
        if update_fields is not None:
            wanted = set(update_fields)
            attnames = {
                attname: name
                for attname, name in attnames.items()
                if attname in wanted or name in wanted
            }
        # Deferred fields are not written by save(), so they cannot change.
        attnames = {attname: name for attname, name in attnames.items() if attname in self.__dict__}
        if not attnames:
            return
        stored = (
            type(self)
            .objects.filter(pk=self.pk)
            .order_by()
            .values(*attnames, stored_model=F("model__name"), stored_version=F("version"))
            .first()
        )
        if stored is None:
            return
        changed = [
            name
            for attname, name in attnames.items()
            if _comparable(getattr(self, attname)) != stored[attname]
        ]
        if changed:
            raise ImmutableVersionError(
                f"version {stored['stored_model']}/{stored['stored_version']} is immutable; "
                f"refused change to: {', '.join(changed)}"
            )


def _comparable(value):
    """The value as the database gives it back: a file's name, JSON as decoded JSON."""
    if hasattr(value, "storage"):
        return value.name
    if isinstance(value, dict | list | tuple):
        return json.loads(json.dumps(value))
    return value


class ModelAlias(models.Model):
    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="aliases")
    name = models.CharField(max_length=64, validators=[alias_validator])
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="aliases")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["model__name", "name"]
        verbose_name_plural = "model aliases"
        constraints = [
            models.UniqueConstraint(fields=["model", "name"], name="unique_alias_per_model")
        ]

    def __str__(self) -> str:
        return f"{self.model.name}@{self.name}"


class ApiKey(models.Model):
    """An API key. Only its sha256 is stored; `prefix` identifies it to people."""

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, db_index=True, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    allowed_models = models.ManyToManyField(
        RegisteredModel,
        blank=True,
        related_name="api_keys",
        help_text="Models this key may call. Empty: all models.",
    )
    requests_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text="Most requests per minute. Empty: no limit."
    )
    tokens_per_minute = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Most prompt + completion tokens per minute. Empty: no limit.",
    )
    monthly_token_budget = models.PositiveBigIntegerField(
        null=True,
        blank=True,
        help_text="Most prompt + completion tokens per calendar month (UTC). Empty: no limit.",
    )
    can_read_metrics = models.BooleanField(
        default=False, help_text="May read GET /metrics from other hosts than the server itself."
    )
    playground_user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        editable=False,
        on_delete=models.CASCADE,
        related_name="playground_key",
        help_text="The staff user whose admin playground requests this key counts (its raw"
        " value is never shown: it is used by the playground only).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name", "-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @staticmethod
    def hash_key(raw_key: str) -> str:
        # Keys are 256-bit random tokens, so a fast unsalted hash is safe and keeps lookup O(1).
        return hashlib.sha256(raw_key.encode()).hexdigest()


class UsageBucket(models.Model):
    """What one model version served one API key in one hour (UTC), summed over every worker.

    Written only by additive upserts (`chatmodels.usage`), never a row per request. Requests
    without a key (the admin playground, anonymous calls) count with `api_key` empty.
    """

    # The counters that add up across workers and hosts (`latency_ms_max` is a maximum).
    SUMMED_FIELDS = (
        "requests",
        "errors",
        "invalid_requests",
        "rejected",
        "model_errors",
        "timeouts",
        "prompt_tokens",
        "completion_tokens",
        "latency_ms_sum",
    )

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="usage")
    version = models.PositiveIntegerField()
    # PROTECT: usage is an account of what a key did; revoke a key instead of deleting it.
    api_key = models.ForeignKey(
        ApiKey, on_delete=models.PROTECT, null=True, blank=True, related_name="usage"
    )
    hour = models.DateTimeField(help_text="Start of the hour (UTC)")
    requests = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0, help_text="Requests answered with an error")
    invalid_requests = models.BigIntegerField(default=0, help_text=INVALID_REQUEST.description)
    rejected = models.BigIntegerField(default=0, help_text=REJECTED.description)
    model_errors = models.BigIntegerField(default=0, help_text=MODEL_ERROR.description)
    timeouts = models.BigIntegerField(default=0, help_text=TIMEOUT.description)
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    latency_ms_sum = models.BigIntegerField(default=0)
    latency_ms_max = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["-hour", "model", "version"]
        verbose_name = "usage bucket"
        verbose_name_plural = "usage"
        constraints = [
            # NULL keys are distinct in a plain unique index, so the upsert could never find
            # the keyless bucket: the index is on COALESCE(api_key_id, 0) instead.
            models.UniqueConstraint(
                "model",
                "version",
                Coalesce("api_key", Value(0)),
                "hour",
                name="unique_usage_bucket",
            )
        ]
        indexes = [
            models.Index(fields=["hour"], name="usage_hour_idx"),
            models.Index(fields=["api_key", "hour"], name="usage_key_hour_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.model_id}/{self.version} key {self.api_key_id} at {self.hour:%Y-%m-%d %H}:00"


class LimitCounter(models.Model):
    """A per-key limit's count in one time window, in the database store of `chatmodels.limits`.

    Written with atomic upserts (`count = count + n`), and only for keys that have limits;
    rows past `expires_at` are deleted now and then. A Redis cache (`CACHE_URL`) replaces this.
    """

    subject = models.CharField(max_length=100, help_text="Whose count: key id and limit kind.")
    window_start = models.BigIntegerField(help_text="Unix time at which the window starts.")
    count = models.BigIntegerField(default=0)
    expires_at = models.BigIntegerField(help_text="Unix time after which the row is not needed.")

    class Meta:
        ordering = ["subject", "window_start"]
        constraints = [
            models.UniqueConstraint(fields=["subject", "window_start"], name="unique_limit_window")
        ]
        indexes = [models.Index(fields=["expires_at"], name="limit_counter_expiry")]

    def __str__(self) -> str:
        return f"{self.subject} @ {self.window_start}: {self.count}"


# ---------------------------------------------------------------------------------------------
# The Responses API's state: stored responses, conversations, and the items they are made of
# (`chatmodels/responses_store.py` reads and writes them).


class ItemThread(models.Model):
    """An ordered run of Responses items (messages, function calls and their outputs): what a
    model sees when a response continues a chain (`previous_response_id`) or a conversation.

    A chain of responses appends to one thread, each response a range of positions in it, so
    that continuing a chain of any length reads one range of rows. A response continued from the
    middle of a thread (a branch) starts a new thread with a copy of the items before it.
    """

    api_key = models.ForeignKey(
        ApiKey, on_delete=models.CASCADE, null=True, blank=True, related_name="item_threads"
    )
    length = models.PositiveIntegerField(default=0, help_text="Position of the next item.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"thread {self.pk} ({self.length} items)"


class StoredItem(models.Model):
    """One item of a thread, as the API lists it (with its `id`)."""

    thread = models.ForeignKey(ItemThread, on_delete=models.CASCADE, related_name="items")
    position = models.PositiveIntegerField()
    item_id = models.CharField(max_length=100)
    item = models.JSONField()

    class Meta:
        ordering = ["thread", "position"]
        constraints = [
            models.UniqueConstraint(fields=["thread", "position"], name="unique_item_position")
        ]
        indexes = [models.Index(fields=["thread", "item_id"], name="stored_item_id_idx")]

    def __str__(self) -> str:
        return self.item_id


class Conversation(models.Model):
    """A conversation of the Conversations API: its items are a thread of its own."""

    conversation_id = models.CharField(max_length=100, unique=True)
    api_key = models.ForeignKey(
        ApiKey, on_delete=models.CASCADE, null=True, blank=True, related_name="conversations"
    )
    thread = models.OneToOneField(ItemThread, on_delete=models.PROTECT, related_name="conversation")
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.conversation_id


class StoredResponse(models.Model):
    """A response object kept for `GET /v1/responses/{id}` and `previous_response_id`.

    Its input items are positions [input_start, output_start) of its thread and its output
    items [output_start, end); the conversation it continues is every item before `end`.
    """

    response_id = models.CharField(max_length=100, unique=True)
    api_key = models.ForeignKey(
        ApiKey, on_delete=models.CASCADE, null=True, blank=True, related_name="stored_responses"
    )
    model = models.CharField(max_length=300, help_text="The model as the request named it.")
    model_name = models.CharField(max_length=128, db_index=True, help_text="The model's name.")
    status = models.CharField(max_length=20)
    response = models.JSONField(help_text="The response object, as the API answers it.")
    thread = models.ForeignKey(ItemThread, on_delete=models.PROTECT, related_name="responses")
    input_start = models.PositiveIntegerField()
    output_start = models.PositiveIntegerField()
    end = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "stored response"
        indexes = [models.Index(fields=["api_key", "-created_at"], name="stored_response_key_idx")]

    def __str__(self) -> str:
        return self.response_id
