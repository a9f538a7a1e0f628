"""Writes to the registry: register_model, aliases and API keys, through the real services."""

from __future__ import annotations

import hashlib
import json
import tempfile
import textwrap
from pathlib import Path

import pytest
from django.core.files.storage import storages

from chatmodels import packaging, services
from chatmodels.exceptions import (
    AliasNotFound,
    ApiKeyNotFound,
    InvalidModelOutput,
    InvalidName,
    InvalidTarget,
    ModelNotFound,
    ModelRaised,
    RegistrationError,
    SignatureNotAllowed,
    VersionNotFound,
)
from chatmodels.models import ApiKey, ModelAlias, ModelTag, ModelVersion, RegisteredModel
from chatmodels.selectors import get_api_key, resolve_version
from chatmodels.signature import DEFAULT_INPUT_EXAMPLE, chat_signature
from chatmodels.types import ChatRequest
from tests.sample_models import (
    BadNestedOutputModel,
    ConfiguredModel,
    DictOutputModel,
    NotAChatModel,
    RaisingModel,
    StringOutputModel,
    TriggerModel,
)

pytestmark = pytest.mark.django_db

SHOUT_SOURCE = textwrap.dedent(
    """
    from chatmodels import ChatModel, ChatResponse


    class Shout(ChatModel):
        def predict(self, context, messages, params):
            text = messages[-1].content.upper()
            return ChatResponse(choices=[{"message": {"role": "assistant", "content": text}}])
    """
)


def stored_package_files() -> set[str]:
    """Every file in the package storage (works for any Django storage, local or S3)."""
    storage = storages["packages"]
    found: set[str] = set()

    def walk(folder: str) -> None:
        try:
            folders, files = storage.listdir(folder)
        except FileNotFoundError:
            return
        found.update(f"{folder}/{name}" if folder else name for name in files)
        for name in folders:
            walk(f"{folder}/{name}" if folder else name)

    walk("")
    return found


def answer(version: ModelVersion, text: str) -> str:
    """What the stored package (not the author's current source) answers to `text`."""
    with version.package.open("rb") as file:
        data = file.read()
    with tempfile.TemporaryDirectory() as work_dir:
        loaded = packaging.open_package(data, expected_digest=version.digest, work_dir=work_dir)
        request = ChatRequest.from_dict({"messages": [{"role": "user", "content": text}]})
        messages, params = request.split()
        response = loaded.model.predict(loaded.context, messages, params)
    return response.choices[0].message.content


# --- register_model: success ------------------------------------------------------------------


def test_registration_stores_a_complete_self_contained_version():
    version = services.register_model(
        "echo", TriggerModel(), description="Echoes.", created_by="alice"
    )

    version = ModelVersion.objects.get(pk=version.pk)
    assert (version.model.name, version.version, version.status) == (
        "echo",
        1,
        ModelVersion.Status.READY,
    )
    assert version.model.description == "Echoes."
    assert version.signature == chat_signature()
    assert version.input_example == DEFAULT_INPUT_EXAMPLE
    assert version.class_path == "tests.sample_models:TriggerModel"
    assert version.created_by == "alice"
    with version.package.open("rb") as file:
        data = file.read()
    assert version.digest == hashlib.sha256(data).hexdigest()
    assert version.size == len(data)
    assert version.python_version
    assert {"python", "cloudpickle", "chatmodels"} <= set(version.package_versions)
    assert version.package.name in stored_package_files()
    assert answer(version, "hello") == "hello"


def test_each_registration_is_the_next_version_with_its_own_package():
    first = services.register_model("echo", TriggerModel)
    second = services.register_model("echo", "tests.sample_models:TriggerModel")
    other = services.register_model("other", TriggerModel())

    assert [first.version, second.version, other.version] == [1, 2, 1]
    assert first.package.name != second.package.name
    assert RegisteredModel.objects.count() == 2


def test_a_file_target_is_frozen_by_value(tmp_path):
    source = tmp_path / "shout_model.py"
    source.write_text(SHOUT_SOURCE)

    version = services.register_model("shout", f"{source}:Shout")

    # Editing, then deleting, the author's file does not change what the version serves.
    source.write_text(SHOUT_SOURCE.replace(".upper()", ".lower()"))
    source.unlink()
    version = ModelVersion.objects.get(pk=version.pk)
    assert answer(version, "Hello") == "HELLO"
    assert version.source_code == SHOUT_SOURCE
    assert version.class_path == "shout_model.py:Shout"


def test_aliases_tags_artifacts_config_and_input_example_are_stored(tmp_path):
    greeting = tmp_path / "greeting.txt"
    greeting.write_text("hi from the artifact\n")
    example = {"messages": [{"role": "user", "content": "Bonjour"}], "max_tokens": 5}

    version = services.register_model(
        "configured",
        ConfiguredModel(),
        aliases=["prod", "staging"],
        tags={"team": "search", "tier": ""},
        artifacts={"greeting": greeting},
        model_config={"prefix": "> "},
        input_example=example,
    )

    greeting.write_text("changed afterwards")
    version = ModelVersion.objects.get(pk=version.pk)
    assert version.input_example == example
    assert version.model_config == {"prefix": "> "}
    assert version.artifacts["greeting"]["size"] == len("hi from the artifact\n")
    assert answer(version, "anything") == "> hi from the artifact"
    assert sorted(version.aliases.values_list("name", flat=True)) == ["prod", "staging"]
    tags = dict(ModelTag.objects.filter(model=version.model).values_list("key", "value"))
    assert tags == {"team": "search", "tier": ""}


def test_registering_with_an_existing_alias_moves_it_and_tags_update():
    services.register_model("echo", TriggerModel(), aliases=["prod"], tags={"team": "a"})
    second = services.register_model("echo", TriggerModel(), aliases=["prod"], tags={"team": "b"})

    assert resolve_version(name="echo", alias="prod").id == second.pk
    assert ModelTag.objects.get(model=second.model, key="team").value == "b"
    assert ModelAlias.objects.count() == 1


def test_a_new_version_keeps_the_description_unless_one_is_given():
    services.register_model("echo", TriggerModel(), description="First.")
    services.register_model("echo", TriggerModel())
    assert RegisteredModel.objects.get(name="echo").description == "First."

    services.register_model("echo", TriggerModel(), description="Second.")
    assert RegisteredModel.objects.get(name="echo").description == "Second."


def test_worker_settings_are_kept_unless_given_and_0_removes_the_memory_limit():
    services.register_model("echo", TriggerModel())
    model = RegisteredModel.objects.get(name="echo")
    assert (model.worker_replicas, model.worker_memory_mb) == (1, None)

    services.register_model("echo", TriggerModel(), worker_replicas=3, worker_memory_mb=512)
    services.register_model("echo", TriggerModel())
    model.refresh_from_db()
    assert (model.worker_replicas, model.worker_memory_mb) == (3, 512)
    assert (
        resolve_version(name="echo").worker_replicas,
        resolve_version(name="echo").worker_memory_mb,
    ) == (3, 512)

    services.register_model("echo", TriggerModel(), worker_memory_mb=0)
    model.refresh_from_db()
    assert (model.worker_replicas, model.worker_memory_mb) == (3, None)


# --- register_model: every refusal leaves nothing behind -------------------------------------


def refusals(tmp_path):
    not_json_config = {"when": object()}
    return {
        "unknown file": (
            {"model": f"{tmp_path / 'missing.py'}:Model"},
            InvalidTarget,
            r"file .*missing\.py not found",
        ),
        "unknown module": (
            {"model": "no_such_package.models:Model"},
            InvalidTarget,
            r"module 'no_such_package\.models' not found",
        ),
        "unknown class": (
            {"model": "tests.sample_models:Missing"},
            InvalidTarget,
            r"class 'Missing' not found in tests\.sample_models",
        ),
        "not a ChatModel target": (
            {"model": "tests.sample_models:NotAChatModel"},
            InvalidTarget,
            r"NotAChatModel is not a subclass of chatmodels\.ChatModel",
        ),
        "not a ChatModel class": (
            {"model": NotAChatModel},
            RegistrationError,
            r"NotAChatModel is not a subclass of chatmodels\.ChatModel",
        ),
        "not a ChatModel instance": (
            {"model": NotAChatModel()},
            RegistrationError,
            r"expected a ChatModel instance, subclass or 'module:Class' target, got NotAChatModel",
        ),
        "target without a class": (
            {"model": "tests.sample_models"},
            InvalidTarget,
            r"must look like 'package\.module:Class' or 'path/file\.py:Class'",
        ),
        "name with a slash": ({"name": "team/echo"}, InvalidName, r"model name 'team/echo'"),
        "name with an at": ({"name": "echo@prod"}, InvalidName, r"invalid model name 'echo@prod'"),
        "name too long": ({"name": "e" * 129}, InvalidName, r"1-128 letters"),
        "empty name": ({"name": ""}, InvalidName, r"invalid model name ''"),
        "name starting with a dot": ({"name": ".echo"}, InvalidName, r"invalid model name"),
        "predict raised": (
            {"model": RaisingModel()},
            ModelRaised,
            r"^predict raised ValueError: model exploded at sample_models\.py:67 in predict: "
            r"`raise ValueError\(\"model exploded\"\)`$",
        ),
        "predict returned a dict": (
            {"model": DictOutputModel()},
            InvalidModelOutput,
            r"^predict returned dict, not ChatResponse: \{'choices'",
        ),
        "predict returned a string": (
            {"model": StringOutputModel()},
            InvalidModelOutput,
            r"^predict returned str, not ChatResponse: 'hello'; wrap it: `return ChatResponse\(",
        ),
        "predict returned an invalid ChatResponse": (
            {"model": BadNestedOutputModel()},
            InvalidModelOutput,
            r"invalid ChatResponse: choices\[0\]\.message\.content",
        ),
        "missing artifact": (
            {"artifacts": {"weights": tmp_path / "missing.bin"}},
            RegistrationError,
            r"artifact 'weights': .*missing\.bin does not exist",
        ),
        "bad artifact name": (
            {"artifacts": {"../escape": tmp_path}},
            RegistrationError,
            r"artifact name '\.\./escape'",
        ),
        "input example that is not a chat request": (
            {"input_example": {"messages": "hello"}},
            RegistrationError,
            r"invalid input example: messages",
        ),
        "model_config that is not JSON": (
            {"model_config": not_json_config},
            RegistrationError,
            r"model_config is not JSON-serializable",
        ),
        "caller-supplied signature": (
            {"signature": chat_signature()},
            SignatureNotAllowed,
            r"signatures are generated automatically",
        ),
        "reserved alias": ({"aliases": ["latest"]}, InvalidName, r"alias 'latest' is reserved"),
        "bad alias": ({"aliases": ["prod/1"]}, InvalidName, r"invalid alias 'prod/1'"),
        **{
            f"worker setting {setting}={value!r}": ({setting: value}, RegistrationError, message)
            for setting, value, message in WORKER_SETTINGS_REFUSED
        },
    }


# Worker settings out of range: the setting, its value, what is said.
WORKER_SETTINGS_REFUSED = (
    ("worker_replicas", 0, r"^worker_replicas must be a whole number >= 1, got 0$"),
    ("worker_replicas", "2", r"^worker_replicas must be a whole number >= 1, got '2'$"),
    ("worker_memory_mb", -1, r"^worker_memory_mb must be .* >= 0 \(0: no limit\), got -1$"),
    ("worker_memory_mb", True, r"^worker_memory_mb must be .* >= 0 \(0: no limit\), got True$"),
)


REFUSALS = list(refusals(Path("unused")))


@pytest.mark.parametrize("case", REFUSALS)
def test_a_refused_registration_says_why_and_leaves_no_row_and_no_file(case, tmp_path):
    options, error, message = refusals(tmp_path)[case]
    options = {"name": "echo", "model": TriggerModel(), **options}
    files_before = stored_package_files()

    with pytest.raises(error, match=message):
        services.register_model(options.pop("name"), options.pop("model"), **options)

    assert not RegisteredModel.objects.exists()
    assert not ModelVersion.objects.exists()
    assert not ModelAlias.objects.exists()
    assert not ModelTag.objects.exists()
    assert stored_package_files() == files_before


def test_a_refused_new_version_leaves_the_existing_ones_untouched():
    first = services.register_model("echo", TriggerModel(), aliases=["prod"], description="Ok.")
    files_before = stored_package_files()

    with pytest.raises(ModelRaised):
        services.register_model("echo", RaisingModel(), aliases=["prod"], description="Bad.")

    assert list(ModelVersion.objects.values_list("version", flat=True)) == [1]
    assert resolve_version(name="echo", alias="prod").id == first.pk
    assert RegisteredModel.objects.get().description == "Ok."
    assert stored_package_files() == files_before


def test_load_context_errors_are_refused(tmp_path):
    source = tmp_path / "broken_load.py"
    source.write_text(
        SHOUT_SOURCE
        + "\n    def load_context(self, context):\n        raise OSError('weights missing')\n"
    )

    with pytest.raises(ModelRaised, match=r"load_context raised OSError: weights missing"):
        services.register_model("shout", f"{source}:Shout")
    assert not ModelVersion.objects.exists()


def test_a_module_that_fails_to_import_is_refused_with_the_reason(tmp_path):
    source = tmp_path / "syntax_error.py"
    source.write_text("class Broken(:\n")

    with pytest.raises(InvalidTarget, match=r"importing syntax_error\.py raised SyntaxError"):
        services.register_model("broken", f"{source}:Broken")


# --- aliases ----------------------------------------------------------------------------------


def test_set_alias_creates_then_moves_an_alias():
    first = services.register_model("echo", TriggerModel())
    second = services.register_model("echo", TriggerModel())

    created = services.set_alias(name="echo", alias="prod", version=1)
    assert created.version == first
    moved = services.set_alias(name="echo", alias="prod", version=2)

    assert moved.pk == created.pk
    assert resolve_version(name="echo", alias="prod").id == second.pk
    assert ModelAlias.objects.count() == 1


@pytest.mark.parametrize(
    ("name", "alias", "version", "error", "message"),
    [
        ("nope", "prod", 1, ModelNotFound, "model 'nope' not found"),
        ("echo", "prod", 9, VersionNotFound, "model 'echo' has no version 9"),
        ("echo", "latest", 1, InvalidName, "alias 'latest' is reserved"),
        ("echo", "1st", 1, InvalidName, "invalid alias '1st'"),
        ("echo", "a@b", 1, InvalidName, "invalid alias 'a@b'"),
    ],
)
def test_set_alias_refusals(name, alias, version, error, message):
    services.register_model("echo", TriggerModel())

    with pytest.raises(error, match=message):
        services.set_alias(name=name, alias=alias, version=version)
    assert not ModelAlias.objects.exists()


def test_remove_alias():
    services.register_model("echo", TriggerModel(), aliases=["prod", "staging"])

    services.remove_alias(name="echo", alias="prod")

    assert list(ModelAlias.objects.values_list("name", flat=True)) == ["staging"]
    with pytest.raises(AliasNotFound, match="model 'echo' has no alias 'prod'"):
        services.remove_alias(name="echo", alias="prod")
    with pytest.raises(ModelNotFound, match="model 'nope' not found"):
        services.remove_alias(name="nope", alias="prod")


# --- API keys ---------------------------------------------------------------------------------


def test_create_api_key_stores_only_a_hash_and_the_allowed_models():
    services.register_model("echo", TriggerModel())
    services.register_model("other", TriggerModel())

    key, raw_key = services.create_api_key(name="ci", models=["echo"])

    assert raw_key.startswith("cm_") and len(raw_key) > 40
    stored = ApiKey.objects.get(pk=key.pk)
    assert stored.key_hash == hashlib.sha256(raw_key.encode()).hexdigest()
    assert raw_key.startswith(stored.prefix)
    assert raw_key not in json.dumps(list(ApiKey.objects.values()), default=str)
    assert list(stored.allowed_models.values_list("name", flat=True)) == ["echo"]
    assert get_api_key(raw_key).id == key.pk


def test_create_api_key_for_all_models_and_refusals():
    key, raw_key = services.create_api_key(name="everything")
    assert not key.allowed_models.exists()
    assert services.create_api_key(name="everything")[1] != raw_key

    with pytest.raises(ModelNotFound, match="model 'nope' not found"):
        services.create_api_key(name="limited", models=["nope"])
    with pytest.raises(InvalidName, match="1-100 characters"):
        services.create_api_key(name="  ")
    assert list(ApiKey.objects.values_list("name", flat=True)) == ["everything", "everything"]


def test_revoke_api_key_by_prefix_or_key():
    first, first_raw = services.create_api_key(name="first")
    second, second_raw = services.create_api_key(name="second")

    services.revoke_api_key(key=first.prefix)
    services.revoke_api_key(key=second)

    assert get_api_key(first_raw) is None
    assert get_api_key(second_raw) is None
    assert ApiKey.objects.filter(revoked_at__isnull=False).count() == 2
    with pytest.raises(ApiKeyNotFound, match=r"^API key first \(cm_\S+…\) is already revoked$"):
        services.revoke_api_key(key=first.prefix)
    with pytest.raises(ApiKeyNotFound):
        services.revoke_api_key(key="cm_unknown")
