"""Reads of the registry, shared by the API, the admin and the commands (query-count aware)."""

from __future__ import annotations

import re

from django.db.models import Count, Exists, Max, OuterRef, Prefetch, Q, QuerySet

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


def resolve_version(
    *, name: str, version: int | None = None, alias: str | None = None
) -> ModelVersion:
    """The version a request means: by number, by alias, or the latest ready one. One query."""
    versions = ModelVersion.objects.select_related("model").filter(model__name=name)
    if version is not None:
        found = versions.filter(version=version).first()
    elif alias is not None:
        found = versions.filter(aliases__name=alias, aliases__model__name=name).first()
    else:
        found = versions.filter(status=ModelVersion.Status.READY).order_by("-version").first()
    if found is not None:
        return found
    raise _not_found(name=name, version=version, alias=alias)


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


def list_versions(*, name: str) -> QuerySet[ModelVersion]:
    """A model's versions, newest first, with their aliases."""
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
    allowed = ApiKey.allowed_models.through.objects.filter(apikey_id=OuterRef("pk"))
    return (
        ApiKey.objects.filter(key_hash=ApiKey.hash_key(raw_key), revoked_at=None)
        .annotate(restricted=Exists(allowed))
        .first()
    )


def key_allows(key: ApiKey, model: RegisteredModel | int) -> bool:
    """Whether `key` may call `model`: no query for unrestricted keys, else one."""
    restricted = getattr(key, "restricted", None)  # set by get_api_key
    if restricted is False:
        return True
    model_id = model if isinstance(model, int) else model.pk
    allowed = ApiKey.allowed_models.through.objects.filter(apikey_id=key.pk)
    if restricted is None and not allowed.exists():
        return True
    return allowed.filter(registeredmodel_id=model_id).exists()
