"""Reads of the registry, shared by the API, the admin and the commands (query-count aware)."""

from __future__ import annotations

import re

from django.db import connection
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


# The serving hot path runs these two lookups on every request. They are plain SQL, built once:
# the ORM spends about 20x longer compiling a query than SQLite or PostgreSQL spend answering it.
def _in_field_order(model, names: set[str]) -> tuple[str, ...]:
    # Model.from_db takes values in the order of the model's fields.
    return tuple(f.attname for f in model._meta.concrete_fields if f.attname in names)


_VERSION_COLUMNS = _in_field_order(
    ModelVersion, {"id", "model_id", "version", "status", "digest", "package"}
)
_MODEL_COLUMNS = ("name",)


def _version_sql(where: str, *, alias_join: bool = False) -> str:
    version_table = ModelVersion._meta.db_table
    model_table = RegisteredModel._meta.db_table
    join = ""
    if alias_join:
        join = f" JOIN {ModelAlias._meta.db_table} a ON a.version_id = v.id AND a.model_id = m.id"
    columns = ", ".join(
        [*(f"v.{c}" for c in _VERSION_COLUMNS), *(f"m.{c}" for c in _MODEL_COLUMNS)]
    )
    return (
        f"SELECT {columns} FROM {version_table} v"
        f" JOIN {model_table} m ON m.id = v.model_id{join} WHERE m.name = %s AND {where}"
    )


_RESOLVE_SQL = {
    "version": _version_sql("v.version = %s"),
    "alias": _version_sql("a.name = %s", alias_join=True),
    "latest": _version_sql("v.status = %s") + " ORDER BY v.version DESC LIMIT 1",
}


def resolve_version(
    *, name: str, version: int | None = None, alias: str | None = None
) -> ModelVersion:
    """The version a request means: by number, by alias, or the latest ready one. One query.

    The version comes with its model; its heavy columns (signature, code…) load only if read.
    """
    if version is not None:
        sql, params = _RESOLVE_SQL["version"], [name, version]
    elif alias is not None:
        sql, params = _RESOLVE_SQL["alias"], [name, alias]
    else:
        sql, params = _RESOLVE_SQL["latest"], [name, ModelVersion.Status.READY]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        raise _not_found(name=name, version=version, alias=alias)
    split = len(_VERSION_COLUMNS)
    found = ModelVersion.from_db(connection.alias, _VERSION_COLUMNS, row[:split])
    found.model = RegisteredModel.from_db(
        connection.alias, ("id", *_MODEL_COLUMNS), (found.model_id, *row[split:])
    )
    return found


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


def get_api_key(raw_key: str) -> ApiKey | None:
    """The active key with this raw value, or None. One query, which also tells whether the key
    is limited to some models (`restricted`), so unrestricted keys cost no second query."""
    if not raw_key:
        return None
    with connection.cursor() as cursor:
        cursor.execute(_KEY_SQL, [ApiKey.hash_key(raw_key)])
        row = cursor.fetchone()
    if row is None:
        return None
    key = ApiKey.from_db(connection.alias, ("id", "name", "prefix"), row[:3])
    key.restricted = bool(row[3])
    return key


def key_allows(key: ApiKey, model: RegisteredModel | int) -> bool:
    """Whether `key` may call `model`: no query for unrestricted keys, else one."""
    restricted = getattr(key, "restricted", None)  # set by get_api_key
    if restricted is False:
        return True
    model_id = model if isinstance(model, int) else model.pk
    allowed = ApiKey.allowed_models.through.objects.filter(apikey_id=key.pk)
    if restricted is None and not allowed.exists():
        return True
    with connection.cursor() as cursor:
        cursor.execute(_KEY_ALLOWS_SQL, [key.pk, model_id])
        return cursor.fetchone() is not None


_ALLOWED_TABLE = ApiKey.allowed_models.through._meta.db_table
_KEY_SQL = (
    f"SELECT k.id, k.name, k.prefix, EXISTS(SELECT 1 FROM {_ALLOWED_TABLE} a"
    f" WHERE a.apikey_id = k.id) FROM {ApiKey._meta.db_table} k"
    " WHERE k.key_hash = %s AND k.revoked_at IS NULL"
)
_KEY_ALLOWS_SQL = f"SELECT 1 FROM {_ALLOWED_TABLE} WHERE apikey_id = %s AND registeredmodel_id = %s"
