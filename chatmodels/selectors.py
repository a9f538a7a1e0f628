"""Reads of the registry and of usage, shared by the API, the admin and the commands (query-count
aware)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypedDict

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Count, F, Max, Min, Prefetch, QuerySet, Sum
from django.db.models.functions import TruncDay

from chatmodels.exceptions import (
    AliasNotFound,
    InvalidRequest,
    ModelNotFound,
    VersionNotFound,
    short_repr,
)
from chatmodels.models import (
    ALIAS_PATTERN,
    NAME_PATTERN,
    ApiKey,
    ModelAlias,
    ModelVersion,
    RegisteredModel,
    UsageBucket,
)

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations

# The version column is a PositiveIntegerField: PostgreSQL's `integer`, so no version is ever past
# 2**31 - 1 (SQLite would store more, but the numbers are the same on every database). Checked
# before any query: SQLite cannot bind an int past 64 bits, PostgreSQL refuses one past 32.
MAX_VERSION = 2**31 - 1


def _whole_numbers_up_to(limit: int) -> str:
    """A regular expression for the whole numbers 1 to `limit` in ASCII digits (leading zeros
    allowed): shorter numbers, then the numbers of as many digits that are not larger."""
    digits = str(limit)
    forms = [f"[1-9][0-9]{{0,{len(digits) - 2}}}"] if len(digits) > 1 else []
    for position, digit in enumerate(digits):
        lowest, highest = (1 if position == 0 else 0), int(digit) - 1
        if highest >= lowest:
            rest = len(digits) - position - 1
            forms.append(f"{digits[:position]}[{lowest}-{highest}][0-9]{{{rest}}}")
    forms.append(digits)
    return f"0*(?:{'|'.join(forms)})"


# A model reference: `name`, `name/VERSION` or `name@ALIAS`. Split on its separators first, so
# that a bad version gets its own message; MODEL_REFERENCE_PATTERN is what is accepted in the end
# (the OpenAPI schema states it, so the schema and the code accept the same references).
_PART = "[^/@]+"
# ASCII digits only: str.isdigit() and int() also take '²' (int() then raises) and '٣' (== 3).
VERSION_DIGITS = _whole_numbers_up_to(MAX_VERSION)
_REFERENCE = re.compile(rf"^(?P<name>{_PART})(?:/(?P<version>{_PART})|@(?P<alias>{_PART}))?\Z")
MODEL_REFERENCE_PATTERN = rf"^{_PART}(/{VERSION_DIGITS}|@{_PART})?$"
_NAME = re.compile(NAME_PATTERN)
_ALIAS = re.compile(ALIAS_PATTERN)
_VERSION_DIGITS = re.compile(VERSION_DIGITS)


def parse_model_reference(
    reference: str, *, not_a_reference_is_unknown: bool = False
) -> tuple[str, int | None, str | None]:
    """Split `name`, `name/3` or `name@prod` into (name, version, alias).

    Text of no such form is a 400, or with `not_a_reference_is_unknown` a 404 (as OpenAI's
    `GET /v1/models/{id}` answers any id it does not know)."""
    match = _REFERENCE.match(reference or "")
    if not match:
        if not_a_reference_is_unknown:
            raise _model_not_found(reference)
        raise InvalidRequest(
            f"model {short_repr(reference, 40)} must be 'name', 'name/VERSION' or 'name@ALIAS'",
            param="model",
        )
    version = match["version"]
    if version is not None:
        version = parse_version_number(version, param="model")
    return match["name"], version, match["alias"]


def parse_version_number(value: str, *, param: str = "version") -> int:
    """A version number as a client writes it: ASCII digits, 1 to MAX_VERSION; else 400.

    400 rather than 404 past MAX_VERSION, as for 0: such a number is not a version number at
    all, whatever is registered.
    """
    if isinstance(value, str) and _VERSION_DIGITS.fullmatch(value):
        return int(value.lstrip("0"))  # int() refuses more than 4,300 digits, zeros included
    raise InvalidRequest(
        f"{param}: a version is a whole number from 1 to {MAX_VERSION} in ASCII digits,"
        f" got {short_repr(value, 40)}",
        param=param,
    )


# The serving hot path runs two lookups on every request (the key, the version). They are plain
# SQL built once, since the ORM spends about 20x longer compiling a query than SQLite or
# PostgreSQL spend answering it, and they skip the rest of the ORM's per-row work too.


def _fetch_one(sql: str, params: list) -> tuple | None:
    """One row of prebuilt SQL (written with `%s` placeholders).

    While Django records queries (DEBUG, tests counting them), it goes through Django's cursor so
    that it is recorded; otherwise straight through the DB-API connection, which skips about a
    fifth of an invocation's cost in cursor wrappers. Same SQL, same single round trip.
    """
    db = connections[DEFAULT_DB_ALIAS]  # the thread's connection, looked up once
    if db.queries_logged:
        with db.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()
    db.ensure_connection()
    with db.wrap_database_errors:
        cursor = db.connection.cursor()
        try:
            cursor.execute(_native_sql(sql, db.vendor), params)
            return cursor.fetchone()
        finally:
            cursor.close()


_NATIVE_SQL: dict[tuple[str, str], str] = {}


def _native_sql(sql: str, vendor: str) -> str:
    # sqlite3 takes `?` placeholders; psycopg takes `%s` as written.
    key = (vendor, sql)
    native = _NATIVE_SQL.get(key)
    if native is None:
        native = sql.replace("%s", "?") if vendor == "sqlite" else sql
        _NATIVE_SQL[key] = native
    return native


@dataclass(frozen=True, slots=True)
class ResolvedVersion:
    """The version a request means, with what serving needs of it and of its model."""

    id: int
    model_id: int
    model_name: str
    version: int
    status: str
    digest: str
    package: str  # its name in package storage
    created_at: datetime
    model_created_at: datetime
    max_concurrency: int | None  # the model's; None: no limit
    worker_replicas: int = 1  # the model's worker processes per server process
    worker_memory_mb: int | None = None  # a worker over it is stopped; None: no limit
    interface: str = "chat_model"  # interfaces.CHAT_MODEL, RESPONSES_AGENT or CHAT_AGENT

    def __str__(self) -> str:
        return f"{self.model_name}/{self.version}"


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    """An active API key as a request sees it. `restricted`: limited to some models; the
    limits (None: none) and the metrics permission come with it, in the same query."""

    id: int
    name: str
    prefix: str
    restricted: bool
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    monthly_token_budget: int | None = None
    can_read_metrics: bool = False


def _version_sql(where: str, *, alias_join: bool = False) -> str:
    version_table = ModelVersion._meta.db_table
    model_table = RegisteredModel._meta.db_table
    join = ""
    if alias_join:
        join = f" JOIN {ModelAlias._meta.db_table} a ON a.version_id = v.id AND a.model_id = m.id"
    return (
        "SELECT v.id, v.model_id, m.name, v.version, v.status, v.digest, v.package,"
        " v.created_at, m.created_at, m.max_concurrency, m.worker_replicas, m.worker_memory_mb,"
        " v.interface"
        f" FROM {version_table} v"
        f" JOIN {model_table} m ON m.id = v.model_id{join} WHERE m.name = %s AND {where}"
    )


_RESOLVE_SQL = {
    "version": _version_sql("v.version = %s"),
    "alias": _version_sql("a.name = %s", alias_join=True),
    # `ModelVersion.objects.latest_ready()` in SQL: the ready version with the highest number
    # (served by the (model, status, -version) index). tests/test_latest_version.py keeps the
    # two in agreement.
    "latest": _version_sql("v.status = %s") + " ORDER BY v.version DESC LIMIT 1",
}


def resolve_version(
    *, name: str, version: int | None = None, alias: str | None = None
) -> ResolvedVersion:
    """The version a request means: by number, by alias, or the latest ready one. One query.

    A name, alias or number that no row can have is not found without asking the database
    (nor handing it a NUL character or an integer past its column).
    """
    if not (
        _NAME.match(name)
        and (alias is None or _ALIAS.match(alias))
        and (version is None or 1 <= version <= MAX_VERSION)
    ):
        raise _not_found(name=name, version=version, alias=alias)
    if version is not None:
        sql, params = _RESOLVE_SQL["version"], [name, version]
    elif alias is not None:
        sql, params = _RESOLVE_SQL["alias"], [name, alias]
    else:
        sql, params = _RESOLVE_SQL["latest"], [name, ModelVersion.Status.READY]
    row = _fetch_one(sql, params)
    if row is None:
        raise _not_found(name=name, version=version, alias=alias)
    *head, created_at, model_created_at, max_concurrency, replicas, memory_mb, interface = row
    # `head` is the row's first seven columns, which mypy cannot count.
    return ResolvedVersion(  # type: ignore[misc]
        *head,
        created_at=_datetime(created_at),
        model_created_at=_datetime(model_created_at),
        max_concurrency=max_concurrency,
        worker_replicas=replicas,
        worker_memory_mb=memory_mb,
        interface=interface,
    )


def _datetime(value: datetime | str) -> datetime:
    # SQLite hands back text from a raw cursor; PostgreSQL an aware datetime.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _not_found(*, name: str, version: int | None, alias: str | None) -> Exception:
    if not _NAME.match(name) or not RegisteredModel.objects.filter(name=name).exists():
        return _model_not_found(name)
    if version is not None:
        return VersionNotFound(f"model '{name}' has no version {version}", param="version")
    if alias is not None:
        quoted = f"'{alias}'" if _ALIAS.match(alias) else short_repr(alias, 40)
        return AliasNotFound(f"model '{name}' has no alias {quoted}", param="alias")
    return VersionNotFound(f"model '{name}' has no ready version", param="model")


def is_model_name(name: str) -> bool:
    """Whether a model could have this name (a lookup for any other needs no query)."""
    return _NAME.match(name) is not None


def _model_not_found(name: str) -> ModelNotFound:
    quoted = f"'{name}'" if _NAME.match(name) else short_repr(name, 40)
    return ModelNotFound(f"model {quoted} not found", param="model")


def get_model(*, name: str) -> RegisteredModel:
    if not _NAME.match(name):
        raise _model_not_found(name)
    try:
        return RegisteredModel.objects.get(name=name)
    except RegisteredModel.DoesNotExist:
        raise _model_not_found(name) from None


def _aliases_prefetch() -> Prefetch:
    return Prefetch(
        "aliases", queryset=ModelAlias.objects.select_related("version").order_by("name")
    )


class _ModelListAnnotations(TypedDict):
    """What list_models() adds to each model, for the type checker."""

    latest_version: int | None
    version_count: int


def list_models() -> QuerySet[WithAnnotations[RegisteredModel, _ModelListAnnotations]]:
    """Models with latest_version, version_count, aliases and tags: three queries, however many."""
    return (
        RegisteredModel.objects.with_latest_version()
        .annotate(version_count=Count("versions", distinct=True))
        .prefetch_related(_aliases_prefetch(), "tags")
        .order_by("name")
    )


def list_versions(*, name: str, model: RegisteredModel | None = None) -> QuerySet[ModelVersion]:
    """A model's versions, newest first, with their aliases (`model` saves looking it up)."""
    if model is None:
        model = get_model(name=name)
    return (
        ModelVersion.objects.filter(model=model)
        .select_related("model")
        .prefetch_related("aliases")
        .order_by("-version")
    )


def earlier_version_like(version: ModelVersion) -> int | None:
    """The newest earlier version of the same model with the same code, configuration, artifacts
    and input example (registering unchanged code again makes a new version: say which)."""
    artifact_digests = {name: entry.get("sha256") for name, entry in version.artifacts.items()}
    candidates = ModelVersion.objects.filter(
        model_id=version.model_id,
        version__lt=version.version,
        class_path=version.class_path,
        source_code=version.source_code,
    ).order_by("-version")
    for earlier in candidates.only("version", "model_config", "input_example", "artifacts"):
        if (
            earlier.model_config == version.model_config
            and earlier.input_example == version.input_example
            and {name: entry.get("sha256") for name, entry in earlier.artifacts.items()}
            == artifact_digests
        ):
            return earlier.version
    return None


def first_usage_hour() -> datetime | None:
    """The hour the oldest usage still kept was counted in (None: no usage yet)."""
    return UsageBucket.objects.aggregate(first=Min("hour"))["first"]


def list_api_keys() -> QuerySet[ApiKey]:
    """Every API key, active and revoked, with the models it is limited to: two queries."""
    return ApiKey.objects.prefetch_related(
        Prefetch("allowed_models", queryset=RegisteredModel.objects.order_by("name"))
    ).order_by("name", "-created_at")


def get_api_key(raw_key: str) -> ApiKeyInfo | None:
    """The active key with this raw value, or None. One query, which also tells whether the key
    is limited to some models (`restricted`), so unrestricted keys cost no second query, and
    brings its request/token limits and metrics permission."""
    if not raw_key:
        return None
    return _key_info(_fetch_one(_KEY_SQL, [ApiKey.hash_key(raw_key)]))


def get_api_key_by_id(key_id: int) -> ApiKeyInfo | None:
    """The active key with this id, or None (one query)."""
    return _key_info(_fetch_one(_KEY_BY_ID_SQL, [key_id]))


def _key_info(row: Any) -> ApiKeyInfo | None:
    if row is None:
        return None
    key_id, name, prefix, restricted, rpm, tpm, budget, can_read_metrics = row
    return ApiKeyInfo(
        id=key_id,
        name=name,
        prefix=prefix,
        restricted=bool(restricted),
        requests_per_minute=rpm,
        tokens_per_minute=tpm,
        monthly_token_budget=budget,
        can_read_metrics=bool(can_read_metrics),
    )


def key_allows(key: ApiKeyInfo, model: RegisteredModel | int) -> bool:
    """Whether `key` may call `model`: no query for unrestricted keys, else one."""
    if not key.restricted:
        return True
    model_id = model if isinstance(model, int) else model.pk
    return _fetch_one(_KEY_ALLOWS_SQL, [key.id, model_id]) is not None


def key_allows_model_named(key: ApiKeyInfo, name: str) -> bool:
    """Whether `key` may call the model named `name` (False when there is none): no query for
    unrestricted keys, else one. A scoped key learns nothing of the models it may not call."""
    if not key.restricted:
        return True
    if not _NAME.match(name):
        return False
    return _fetch_one(_KEY_ALLOWS_NAME_SQL, [key.id, name]) is not None


def model_not_found(name: str) -> ModelNotFound:
    """The 404 for a model that does not exist, or that the request's key may not call (the
    same answer, so a scoped key cannot tell them apart)."""
    return _model_not_found(name)


_ALLOWED_TABLE = ApiKey.allowed_models.through._meta.db_table
_KEY_SQL = (
    f"SELECT k.id, k.name, k.prefix, EXISTS(SELECT 1 FROM {_ALLOWED_TABLE} a"
    " WHERE a.apikey_id = k.id), k.requests_per_minute, k.tokens_per_minute,"
    f" k.monthly_token_budget, k.can_read_metrics FROM {ApiKey._meta.db_table} k"
    " WHERE k.key_hash = %s AND k.revoked_at IS NULL"
)
_KEY_BY_ID_SQL = _KEY_SQL.replace("k.key_hash = %s", "k.id = %s")
_KEY_ALLOWS_SQL = f"SELECT 1 FROM {_ALLOWED_TABLE} WHERE apikey_id = %s AND registeredmodel_id = %s"
_KEY_ALLOWS_NAME_SQL = (
    f"SELECT 1 FROM {_ALLOWED_TABLE} a JOIN {RegisteredModel._meta.db_table} m"
    " ON m.id = a.registeredmodel_id WHERE a.apikey_id = %s AND m.name = %s"
)


# --- Usage ---------------------------------------------------------------------------------------

USAGE_BUCKETS = ("hour", "day")
USAGE_GROUPS = ("start", "model", "version", "key")
# What each usage row sums (as `sum_<counter>`), and the largest single latency (`max_latency_ms`).
USAGE_COUNTERS = UsageBucket.SUMMED_FIELDS


def _usage_buckets(
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    model: str | None = None,
    key_id: int | None = None,
    key_prefix: str | None = None,
    without_key: bool = False,
) -> QuerySet[UsageBucket]:
    rows = UsageBucket.objects.all()
    if since is not None:
        rows = rows.filter(hour__gte=since)
    if until is not None:
        rows = rows.filter(hour__lt=until)
    if model:
        rows = rows.filter(model__name=model)
    if key_id is not None:
        rows = rows.filter(api_key_id=key_id)
    if key_prefix:
        rows = rows.filter(api_key__prefix=key_prefix)
    if without_key:
        rows = rows.filter(api_key__isnull=True)
    return rows


def _usage_sums() -> dict:
    return {
        **{f"sum_{name}": Sum(name) for name in USAGE_COUNTERS},
        "max_latency_ms": Max("latency_ms_max"),
    }


def list_usage(
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    model: str | None = None,
    key_id: int | None = None,
    key_prefix: str | None = None,
    without_key: bool = False,
    bucket: str = "hour",
    by: tuple[str, ...] = USAGE_GROUPS,
) -> QuerySet[UsageBucket, dict[str, Any]]:
    """Usage summed per `by` (of "start", "model", "version", "key"): one query, newest first.

    Hours are from `since` (included) to `until` (excluded); `bucket="day"` adds up each UTC
    day. Rows are dicts: the group's `start`, `model_name`, `version`, `key_id`, `key_name`,
    `key_prefix` (None for requests without a key), then `sum_<counter>` and `max_latency_ms`.
    """
    group: dict = {}
    if "start" in by:
        group["start"] = F("hour") if bucket == "hour" else TruncDay("hour", tzinfo=timezone.utc)
    if "model" in by:
        group["model_name"] = F("model__name")
    if "version" in by:
        group["version_number"] = F("version")
    if "key" in by:
        group.update(
            key_id=F("api_key_id"), key_name=F("api_key__name"), key_prefix=F("api_key__prefix")
        )
    order = [
        name
        for name in ("-start", "model_name", "version_number", "key_id")
        if name.lstrip("-") in group
    ]
    rows = _usage_buckets(
        since=since,
        until=until,
        model=model,
        key_id=key_id,
        key_prefix=key_prefix,
        without_key=without_key,
    )
    return rows.values(**group).annotate(**_usage_sums()).order_by(*order)


def usage_totals(
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    model: str | None = None,
    key_id: int | None = None,
    key_prefix: str | None = None,
    without_key: bool = False,
) -> dict:
    """Everything summed into one row (zeros when nothing was used): one query."""
    rows = _usage_buckets(
        since=since,
        until=until,
        model=model,
        key_id=key_id,
        key_prefix=key_prefix,
        without_key=without_key,
    )
    totals = rows.aggregate(**_usage_sums())
    return {name: value or 0 for name, value in totals.items()}
