"""Writes to the registry (and usage retention): one function per action, one transaction each.

The admin, the API and the management commands all call these; no registry logic lives elsewhere.
"""

from __future__ import annotations

import copy
import logging
import random
import re
import secrets
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import IntegrityError, OperationalError, transaction
from django.utils import timezone

from chatmodels import interfaces, packaging
from chatmodels.agents.base import ChatAgent, ResponsesAgent
from chatmodels.base import ChatModel
from chatmodels.exceptions import (
    AliasNotFound,
    ApiKeyNotFound,
    ChatDataError,
    InvalidName,
    InvalidRequest,
    ModelNotFound,
    RegistrationError,
    VersionNotFound,
)
from chatmodels.models import (
    ALIAS_PATTERN,
    NAME_PATTERN,
    RESERVED_ALIASES,
    ApiKey,
    ModelAlias,
    ModelTag,
    ModelVersion,
    RegisteredModel,
    UsageBucket,
    package_storage,
)
from chatmodels.serving.workers import client as workers
from chatmodels.signature import (
    DEFAULT_INPUT_EXAMPLE,
    chat_signature,
    check_input_example,
    ensure_generated,
    input_example_dict,
)

logger = logging.getLogger(__name__)

REGISTRATION_ATTEMPTS = 8


def register_model(
    name: str,
    python_model_or_target: ChatModel | ResponsesAgent | ChatAgent | type | str,
    *,
    aliases: Iterable[str] = (),
    description: str | None = None,
    tags: Mapping[str, str] | None = None,
    artifacts: Mapping[str, str | Path] | None = None,
    model_config: Mapping[str, Any] | None = None,
    input_example: Mapping[str, Any] | list | tuple | None = None,
    signature: Any = None,
    created_by: str = "",
    max_concurrency: int | None = None,
    worker_replicas: int | None = None,
    worker_memory_mb: int | None = None,
) -> ModelVersion:
    """Validate a ChatModel (or a ResponsesAgent, ChatAgent: the interface is read from the
    class), freeze it and store it as the model's next version.

    `input_example` takes the forms MLflow's `save_model` takes: a chat request dict, a list of
    messages (`ChatMessage` or dicts), or `(messages or request, params)`; it is stored as a dict.

    `max_concurrency` sets the model's limit of requests per server process (0: no limit),
    `worker_replicas` its model worker processes per server process (1 or more) and
    `worker_memory_mb` the memory (RSS, MiB) over which a worker is stopped (0: no limit);
    None leaves a setting as it is.

    What is validated is the unpacked package itself, so it is exactly what will be served.
    A failure at any step leaves no row and no file behind.
    """
    validate_name(name)
    ensure_generated(signature)
    aliases = list(dict.fromkeys(aliases))
    for alias in aliases:
        validate_alias(alias)
    tags = _validate_tags(tags)
    model_settings = _model_settings(
        max_concurrency=max_concurrency,
        worker_replicas=worker_replicas,
        worker_memory_mb=worker_memory_mb,
    )
    model = _instantiate(python_model_or_target)
    interface = interfaces.interface_name(model)
    agent = interfaces.AGENTS.get(interface)
    try:
        if agent is not None:  # a ResponsesAgent or a ChatAgent: its own request format
            example = agent.input_example(
                agent.default_input_example if input_example is None else input_example
            )
        else:
            example = input_example_dict(
                copy.deepcopy(DEFAULT_INPUT_EXAMPLE if input_example is None else input_example)
            )
            check_input_example(example)
    except ChatDataError as error:
        raise RegistrationError(f"invalid input example: {error}") from None

    if agent is None:  # an agent's methods take its own request: MLflow's forms
        packaging.check_method_signatures(model)
    built = packaging.build_package(
        model,
        artifacts=dict(artifacts or {}),
        model_config=dict(model_config or {}),
        input_example=example,
        signature=chat_signature() if agent is None else agent.signature(),
    )
    # The model's save-time predict runs in a worker of its own, on the unpacked package: what
    # was validated is exactly what will be served, and the model's code runs as it will then.
    workers.run_once(built.data, built.digest, example, timeout=settings.CHATMODELS_MODEL_TIMEOUT)

    # The package is written before its row is committed, so a row never names a missing file.
    # A failure or an interruption (Ctrl-C; SIGTERM, which register_model turns into an exit)
    # deletes the file again; only a crash or `kill -9` in between can leave it behind, with no
    # row, and `prune_orphan_packages` removes those. (The other order, or a rename after the
    # commit, would leave a committed row without its package instead; S3 has no rename.)
    storage = package_storage()
    wanted_name = f"{PACKAGE_FOLDER}/{name}/{uuid.uuid4().hex}-{built.digest[:12]}.zip"
    stored_name = None
    try:
        stored_name = storage.save(wanted_name, ContentFile(built.data))
        return _create_version_rows(
            name=name,
            built=built,
            stored_name=stored_name,
            aliases=aliases,
            description=description,
            tags=tags,
            created_by=created_by,
            model_settings=model_settings,
        )
    except BaseException:
        _discard_package(storage, stored_name or wanted_name)  # the name is unique: ours
        raise


# The model's settings register_model takes: the least value each accepts, and whether 0 means
# "no limit" (stored as NULL).
MODEL_SETTINGS = {
    "max_concurrency": (0, True),
    "worker_replicas": (1, False),
    "worker_memory_mb": (0, True),
}


def _model_settings(**given: int | None) -> dict[str, int | None]:
    """The settings given (not None) as the model's fields will hold them; RegistrationError,
    naming the setting, for a value that is not a whole number in range."""
    fields: dict[str, int | None] = {}
    for name, value in given.items():
        if value is None:
            continue
        least, zero_is_no_limit = MODEL_SETTINGS[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            meaning = " (0: no limit)" if zero_is_no_limit else ""
            raise RegistrationError(
                f"{name} must be a whole number >= {least}{meaning}, got {value!r}", param=name
            )
        fields[name] = (value or None) if zero_is_no_limit else value
    return fields


def _instantiate(target: Any) -> Any:
    """A ChatModel, ResponsesAgent or ChatAgent instance, from itself, its class or a target."""
    if isinstance(target, str):
        target = packaging.load_target(target)
    if isinstance(target, type):
        if not issubclass(target, interfaces.MODEL_BASES):
            raise RegistrationError(
                f"{target.__name__} is not a subclass of chatmodels.ChatModel, ResponsesAgent"
                " or ChatAgent"
            )
        try:
            return target()
        except Exception as error:
            raise RegistrationError(
                f"creating {target.__name__}() raised {packaging.describe_error(error)}"
            ) from error
    if not isinstance(target, interfaces.MODEL_BASES):
        raise RegistrationError(
            "expected a ChatModel instance, subclass or 'module:Class' target, got"
            f" {type(target).__name__} (a ResponsesAgent or a ChatAgent is fine too)"
        )
    return target


def _create_version_rows(
    *,
    name: str,
    built: packaging.BuiltPackage,
    stored_name: str,
    aliases: list[str],
    description: str | None,
    tags: dict[str, str],
    created_by: str,
    model_settings: dict[str, int | None],
) -> ModelVersion:
    # The unique (model, version) constraint is the arbiter; a lost race retries with a new number.
    for attempt in range(REGISTRATION_ATTEMPTS):
        try:
            with transaction.atomic():
                registered, _created = RegisteredModel.objects.get_or_create(name=name)
                changed = ["updated_at"]
                if description is not None and registered.description != description:
                    registered.description = description
                    changed.append("description")
                for field_name, setting in model_settings.items():
                    setattr(registered, field_name, setting)
                    changed.append(field_name)
                registered.save(update_fields=changed)
                for key, value in tags.items():
                    ModelTag.objects.update_or_create(
                        model=registered, key=key, defaults={"value": value}
                    )
                version = ModelVersion.objects.create(
                    model=registered,
                    version=ModelVersion.objects.next_number(model=registered),
                    class_path=built.class_path,
                    interface=built.manifest["interface"],
                    signature=built.manifest["signature"],
                    input_example=built.manifest["input_example"],
                    model_config=built.manifest["model_config"],
                    artifacts=built.artifacts,
                    source_code=built.source_code,
                    package=stored_name,
                    digest=built.digest,
                    size=len(built.data),
                    python_version=built.python_version,
                    package_versions=built.package_versions,
                    created_by=created_by,
                )
                for alias in aliases:
                    ModelAlias.objects.update_or_create(
                        model=registered, name=alias, defaults={"version": version}
                    )
                return version
        except (IntegrityError, OperationalError) as error:
            if attempt == REGISTRATION_ATTEMPTS - 1 or not _is_race(error):
                raise
            logger.info("registration race on %s, retrying (%s)", name, error)
            time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))
    raise AssertionError("unreachable")


def _discard_package(storage, stored_name: str) -> None:
    """Delete a package whose registration failed, unless its row was committed after all (a
    commit that raised on the way back): quietly, so the original error is what is seen."""
    try:
        if not ModelVersion.objects.filter(package=stored_name).exists():
            storage.delete(stored_name)
    except Exception as error:
        logger.warning(
            "could not remove package %s of a failed registration (%s); prune_orphan_packages will",
            stored_name,
            error,
        )


def _is_race(error: Exception) -> bool:
    if isinstance(error, IntegrityError):
        return True
    return "locked" in str(error) or "busy" in str(error)


def validate_name(name: Any) -> None:
    if not isinstance(name, str) or not re.match(NAME_PATTERN, name):
        raise InvalidName(
            f"invalid model name {name!r}: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (no '/' or '@')",
            param="name",
        )


def validate_alias(alias: Any) -> None:
    if not isinstance(alias, str) or not re.match(ALIAS_PATTERN, alias):
        raise InvalidName(
            f"invalid alias {alias!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter",
            param="alias",
        )
    if alias in RESERVED_ALIASES:
        raise InvalidName(f"alias {alias!r} is reserved", param="alias")


def _validate_tags(tags: Mapping[str, str] | None) -> dict[str, str]:
    result = {}
    for key, value in (tags or {}).items():
        if not isinstance(key, str) or not key or len(key) > 128:
            raise RegistrationError(f"invalid tag key {key!r}: a string of 1-128 characters")
        if not isinstance(value, str) or len(value) > 1024:
            raise RegistrationError(f"invalid value for tag {key!r}: a string of at most 1024")
        result[key] = value
    return result


def _existing_version(*, name: str, version: int) -> ModelVersion:
    """Version `version` of model `name`, or 404 naming which of the two does not exist."""
    target = (
        ModelVersion.objects.select_related("model")
        .filter(model__name=name, version=version)
        .first()
    )
    if target is None:
        if not RegisteredModel.objects.filter(name=name).exists():
            raise ModelNotFound(f"model '{name}' not found", param="model")
        raise VersionNotFound(f"model '{name}' has no version {version}", param="version")
    return target


@dataclass(frozen=True)
class WorkersRestart:
    """A model's workers asked to restart on this host: in how many server processes they ran."""

    model_name: str
    server_processes: int

    def __str__(self) -> str:
        if not self.server_processes:
            return f"No workers of {self.model_name} run on this host; its next request starts them"
        count = self.server_processes
        where = "1 server process" if count == 1 else f"{count} server processes"
        return f"Restarting the workers of {self.model_name} in {where} of this host"


def restart_model_workers(*, name: str) -> WorkersRestart:
    """Restart model `name`'s worker processes in every server process of this host (within
    about a second) and forget their crashes, so a version its crash loop made unavailable is
    served again; the next request starts them. ModelNotFound for an unknown name."""
    if not RegisteredModel.objects.filter(name=name).exists():
        raise ModelNotFound(f"model '{name}' not found", param="model")
    return WorkersRestart(name, workers.request_restart(name))


@transaction.atomic
def set_alias(*, name: str, alias: str, version: int) -> ModelAlias:
    """Point `name@alias` at `version` (creating or moving the alias)."""
    validate_alias(alias)
    target = _existing_version(name=name, version=version)
    model_alias, _created = ModelAlias.objects.update_or_create(
        model=target.model, name=alias, defaults={"version": target}
    )
    return model_alias


@transaction.atomic
def remove_alias(*, name: str, alias: str) -> None:
    deleted, _ = ModelAlias.objects.filter(model__name=name, name=alias).delete()
    if not deleted:
        if not RegisteredModel.objects.filter(name=name).exists():
            raise ModelNotFound(f"model '{name}' not found", param="model")
        raise AliasNotFound(f"model '{name}' has no alias '{alias}'", param="alias")


# People know a key by its first characters ("cm_" and 9 random ones), stored as its `prefix`.
KEY_PREFIX_LENGTH = 12


@transaction.atomic
def create_api_key(
    *,
    name: str,
    models: Iterable[str] = (),
    requests_per_minute: int | None = None,
    tokens_per_minute: int | None = None,
    monthly_token_budget: int | None = None,
    can_read_metrics: bool = False,
) -> tuple[ApiKey, str]:
    """Make a key; returns it with its raw value, which is shown once and never stored.

    The limits (None: no limit) are counted by `chatmodels.limits`; `can_read_metrics` lets
    the key read GET /metrics from other hosts.
    """
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise InvalidName("an API key name is 1-100 characters", param="name")
    limits = {
        "requests_per_minute": requests_per_minute,
        "tokens_per_minute": tokens_per_minute,
        "monthly_token_budget": monthly_token_budget,
    }
    for field, value in limits.items():
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or value < 0
        ):
            raise InvalidRequest(
                f"{field} must be a whole number, 0 or more (or none), got {value!r}",
                param=field,
            )
    model_names = list(dict.fromkeys(models))
    found = list(RegisteredModel.objects.filter(name__in=model_names))
    missing = sorted(set(model_names) - {model.name for model in found})
    if missing:
        raise ModelNotFound(f"model '{missing[0]}' not found", param="model")
    raw_key = f"cm_{secrets.token_urlsafe(32)}"
    key = ApiKey.objects.create(
        name=name,
        prefix=raw_key[:KEY_PREFIX_LENGTH],
        key_hash=ApiKey.hash_key(raw_key),
        can_read_metrics=can_read_metrics,
        **limits,
    )
    key.allowed_models.set(found)
    return key, raw_key


def playground_key(*, user: Any) -> ApiKey:
    """The key the admin playground counts `user`'s requests against (made on first use, no
    limits; an admin may set some on its page). Its raw value is never known to anyone."""
    key = ApiKey.objects.filter(playground_user=user).first()
    if key is not None:
        return key
    try:
        with transaction.atomic():
            key, _ = create_api_key(name=f"playground: {user.get_username()}"[:100])
            ApiKey.objects.filter(pk=key.pk).update(playground_user=user)
    except IntegrityError:  # made meanwhile by another request of the same user
        return ApiKey.objects.get(playground_user=user)
    key.playground_user = user
    return key


@transaction.atomic
def revoke_api_key(*, key: ApiKey | str) -> ApiKey:
    """Revoke a key, given as an ApiKey, as the raw key, or by a unique prefix of it (as printed,
    with or without its trailing `…`). Takes effect on the next request."""
    if isinstance(key, str):
        key = _find_api_key(key)
        if key.revoked_at is not None:
            raise ApiKeyNotFound(f"API key {key} is already revoked", param="key")
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
    return key


@transaction.atomic
def prune_usage(*, older_than_days: int) -> int:
    """Delete the usage buckets of hours that started more than `older_than_days` days ago;
    returns how many were deleted."""
    if not isinstance(older_than_days, int) or older_than_days < 0:
        raise InvalidRequest(
            f"older_than_days must be a whole number of days, 0 or more, got {older_than_days!r}",
            param="older_than_days",
        )
    cutoff = timezone.now() - timedelta(days=older_than_days)
    deleted, _by_model = UsageBucket.objects.filter(hour__lt=cutoff).delete()
    return deleted


# A shorter reference to a key must still be long enough not to name one by accident.
SHORTEST_KEY_PREFIX = 8


def _find_api_key(reference: str) -> ApiKey:
    """The one key that `reference` names: the raw key, or a prefix of it as people see it
    (`cm_AbCdEfGhI…`). Active keys win over revoked ones sharing a prefix."""
    reference = (reference or "").strip().removesuffix("…").removesuffix("...")
    if len(reference) > KEY_PREFIX_LENGTH:
        # Longer than any prefix: only the whole key can match, by its hash.
        match = ApiKey.objects.filter(key_hash=ApiKey.hash_key(reference)).first()
        if match is None:
            raise ApiKeyNotFound("no API key matches the key given", param="key")
        return match
    if len(reference) < SHORTEST_KEY_PREFIX:
        raise InvalidRequest(
            f"give the whole API key or at least its first {SHORTEST_KEY_PREFIX} characters"
            f" (list_api_keys prints {KEY_PREFIX_LENGTH})",
            param="key",
        )
    matches = list(ApiKey.objects.filter(prefix__startswith=reference).order_by("-created_at"))
    active = [match for match in matches if match.revoked_at is None]
    candidates = active or matches
    if not candidates:
        raise ApiKeyNotFound(f"no API key starts with {reference!r}", param="key")
    if len(candidates) > 1:
        names = ", ".join(str(match) for match in candidates[:5])
        raise InvalidRequest(
            f"{reference!r} matches {len(candidates)} API keys ({names}): give more of the key",
            param="key",
        )
    return candidates[0]


@transaction.atomic
def set_version_status(*, name: str, version: int, status: str) -> ModelVersion:
    """Archive a version (`ModelVersion.Status.ARCHIVED`: never chosen as the latest, still
    served by number or alias) or make it ready again. The only change a version allows."""
    if status not in ModelVersion.Status.values:
        raise InvalidRequest(
            f"status must be one of {', '.join(ModelVersion.Status.values)}, got {status!r}",
            param="status",
        )
    target = _existing_version(name=name, version=version)
    if target.status != status:
        target.status = status
        target.save(update_fields=["status"])
    return target


# ---------------------------------------------------------------------------------------------
# Orphan packages

# A package file younger than this may belong to a registration still in flight (written, not
# yet committed): prune_orphan_packages leaves it alone.
ORPHAN_GRACE = timedelta(hours=1)
PACKAGE_FOLDER = "packages"


@dataclass(frozen=True)
class OrphanPackage:
    name: str  # in package storage
    size: int
    modified: datetime


def prune_orphan_packages(
    *, older_than: timedelta = ORPHAN_GRACE, dry_run: bool = False
) -> list[OrphanPackage]:
    """Delete the package files that no version refers to and that are older than `older_than`;
    returns them (with `dry_run`, only finds them). Local storage or S3 alike."""
    storage = package_storage()
    # Listed before the rows are read: a registration that commits in between is seen as
    # referenced, and one that commits later wrote its file within the grace period.
    files = _package_files(storage, PACKAGE_FOLDER)
    referenced = set(ModelVersion.objects.values_list("package", flat=True))
    cutoff = timezone.now() - older_than
    orphans = []
    for name in files:
        if name in referenced:
            continue
        try:
            modified = storage.get_modified_time(name)
            if modified > cutoff:
                continue
            orphan = OrphanPackage(name=name, size=storage.size(name), modified=modified)
            if not dry_run:
                storage.delete(name)
        except FileNotFoundError:  # gone meanwhile
            continue
        logger.info("orphan package %s%s", name, " (dry run)" if dry_run else " removed")
        orphans.append(orphan)
    return orphans


def _package_files(storage, folder: str) -> list[str]:
    """Every file under `folder` of a Django storage, recursively (listdir: local or S3)."""
    try:
        folders, files = storage.listdir(folder)
    except FileNotFoundError:
        return []
    found = [f"{folder}/{name}" for name in files]
    for name in folders:
        found.extend(_package_files(storage, f"{folder}/{name}"))
    return found
