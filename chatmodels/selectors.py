"""Reads of the registry, shared by the API, the admin and the commands (query-count aware)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Count, Max, Prefetch, Q, QuerySet

from chatmodels.exceptions import (
    AliasNotFound,
    InvalidRequest,
    ModelNotFound,
    VersionNotFound,
)
from chatmodels.models import ApiKey, ModelAlias, ModelVersion, RegisteredModel

_REFERENCE = re.compile(r"^(?P<name>[^/@]+)(?:/(?P<version>[^/@]+)|@(?P<alias>[^/@]+))?\Z")


def parse_model_reference(reference: str) -> tuple[str, int | None, str | None]:
    """Split `name`, `name/3` or `name@prod` into (name, version, alias)."""
    match = _REFERENCE.match(reference or "")
    if not match:
        raise InvalidRequest(
            f"model {reference!r} must be 'name', 'name/VERSION' or 'name@ALIAS'", param="model"
        )
    version = match["version"]
    if version is not None:
        version = parse_version_number(version, param="model")
    return match["name"], version, match["alias"]


def parse_version_number(value: str, *, param: str = "version") -> int:
    if not value.isdigit() or int(value) < 1:
        raise InvalidRequest(f"version must be a positive integer, got {value!r}", param=param)
    return int(value)


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

    def __str__(self) -> str:
        return f"{self.model_name}/{self.version}"


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    """An active API key as a request sees it. `restricted`: limited to some models."""

    id: int
    name: str
    prefix: str
    restricted: bool


def _version_sql(where: str, *, alias_join: bool = False) -> str:
    version_table = ModelVersion._meta.db_table
    model_table = RegisteredModel._meta.db_table
    join = ""
    if alias_join:
        join = f" JOIN {ModelAlias._meta.db_table} a ON a.version_id = v.id AND a.model_id = m.id"
    return (
        "SELECT v.id, v.model_id, m.name, v.version, v.status, v.digest, v.package,"
        " v.created_at, m.created_at, m.max_concurrency"
        f" FROM {version_table} v"
        f" JOIN {model_table} m ON m.id = v.model_id{join} WHERE m.name = %s AND {where}"
    )


_RESOLVE_SQL = {
    "version": _version_sql("v.version = %s"),
    "alias": _version_sql("a.name = %s", alias_join=True),
    "latest": _version_sql("v.status = %s") + " ORDER BY v.version DESC LIMIT 1",
}


def resolve_version(
    *, name: str, version: int | None = None, alias: str | None = None
) -> ResolvedVersion:
    """The version a request means: by number, by alias, or the latest ready one. One query."""
    if version is not None:
        sql, params = _RESOLVE_SQL["version"], [name, version]
    elif alias is not None:
        sql, params = _RESOLVE_SQL["alias"], [name, alias]
    else:
        sql, params = _RESOLVE_SQL["latest"], [name, ModelVersion.Status.READY]
    row = _fetch_one(sql, params)
    if row is None:
        raise _not_found(name=name, version=version, alias=alias)
    *head, created_at, model_created_at, max_concurrency = row
    return ResolvedVersion(
        *head,
        created_at=_datetime(created_at),
        model_created_at=_datetime(model_created_at),
        max_concurrency=max_concurrency,
    )


def _datetime(value: datetime | str) -> datetime:
    # SQLite hands back text from a raw cursor; PostgreSQL an aware datetime.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _not_found(*, name: str, version: int | None, alias: str | None) -> Exception:
    if not RegisteredModel.objects.filter(name=name).exists():
        return ModelNotFound(f"model '{name}' not found", param="model")
    if version is not None:
        return VersionNotFound(f"model '{name}' has no version {version}", param="version")
    if alias is not None:
        return AliasNotFound(f"model '{name}' has no alias '{alias}'", param="alias")
    return VersionNotFound(f"model '{name}' has no ready version", param="model")


def get_model(*, name: str) -> RegisteredModel:
    try:
        return RegisteredModel.objects.get(name=name)
    except RegisteredModel.DoesNotExist:
        raise ModelNotFound(f"model '{name}' not found", param="model") from None


def _aliases_prefetch() -> Prefetch:
    return Prefetch(
        "aliases", queryset=ModelAlias.objects.select_related("version").order_by("name")
    )


def list_models() -> QuerySet[RegisteredModel]:
    """Models with latest_version, version_count, aliases and tags: three queries, however many."""
    return (
        RegisteredModel.objects.annotate(
            latest_version=Max("versions__version", filter=Q(versions__status="ready")),
            version_count=Count("versions", distinct=True),
        )
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


def get_api_key(raw_key: str) -> ApiKeyInfo | None:
    """The active key with this raw value, or None. One query, which also tells whether the key
    is limited to some models (`restricted`), so unrestricted keys cost no second query."""
    if not raw_key:
        return None
    row = _fetch_one(_KEY_SQL, [ApiKey.hash_key(raw_key)])
    if row is None:
        return None
    key_id, name, prefix, restricted = row
    return ApiKeyInfo(id=key_id, name=name, prefix=prefix, restricted=bool(restricted))


def key_allows(key: ApiKeyInfo, model: RegisteredModel | int) -> bool:
    """Whether `key` may call `model`: no query for unrestricted keys, else one."""
    if not key.restricted:
        return True
    model_id = model if isinstance(model, int) else model.pk
    return _fetch_one(_KEY_ALLOWS_SQL, [key.id, model_id]) is not None


_ALLOWED_TABLE = ApiKey.allowed_models.through._meta.db_table
_KEY_SQL = (
    f"SELECT k.id, k.name, k.prefix, EXISTS(SELECT 1 FROM {_ALLOWED_TABLE} a"
    f" WHERE a.apikey_id = k.id) FROM {ApiKey._meta.db_table} k"
    " WHERE k.key_hash = %s AND k.revoked_at IS NULL"
)
_KEY_ALLOWS_SQL = f"SELECT 1 FROM {_ALLOWED_TABLE} WHERE apikey_id = %s AND registeredmodel_id = %s"
