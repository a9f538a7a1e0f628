"""The management commands: register_model, set_alias, list_models, create/revoke_api_key.

Most tests call the commands in-process; a few start real `manage.py` processes, for the exit
code and stderr people see and for registrations racing from several processes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from chatmodels.models import ApiKey, ModelAlias, ModelTag, ModelVersion, RegisteredModel
from chatmodels.selectors import get_api_key, resolve_version
from tests.test_services import stored_package_files

pytestmark = pytest.mark.django_db

REPOSITORY = Path(__file__).resolve().parent.parent
TRIGGER = "tests.sample_models:TriggerModel"


def run(command: str, *args: str) -> str:
    """Run a command in-process; returns what it printed."""
    out = StringIO()
    call_command(command, *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def write_json(path: Path, value) -> str:
    path.write_text(value if isinstance(value, str) else json.dumps(value))
    return str(path)


# --- register_model ---------------------------------------------------------------------------


def test_register_model_prints_one_line_with_name_version_and_digest():
    output = run("register_model", "echo", TRIGGER)

    version = ModelVersion.objects.get()
    assert output == f"Registered echo version 1 (sha256 {version.digest})\n"
    assert run("register_model", "echo", TRIGGER, "--alias", "prod", "--alias", "canary") == (
        f"Registered echo version 2 (sha256 {ModelVersion.objects.get(version=2).digest})"
        ", aliases prod, canary\n"
    )
    assert resolve_version(name="echo", alias="canary").version == 2


def test_register_model_takes_every_option(tmp_path):
    greeting = tmp_path / "greeting.txt"
    greeting.write_text("from the artifact")
    example = {"messages": [{"role": "user", "content": "Hi"}], "temperature": 0.5}

    output = run(
        "register_model",
        "configured",
        "tests.sample_models:ConfiguredModel",
        "--description",
        "Says its artifact.",
        "--tag",
        "team=search",
        "--tag",
        "owner=",
        "--artifact",
        f"greeting={greeting}",
        "--model-config",
        write_json(tmp_path / "config.json", {"prefix": "> "}),
        "--input-example",
        write_json(tmp_path / "example.json", example),
    )

    version = ModelVersion.objects.get()
    assert output.startswith("Registered configured version 1 (sha256 ")
    assert version.model.description == "Says its artifact."
    assert dict(ModelTag.objects.values_list("key", "value")) == {"team": "search", "owner": ""}
    assert set(version.artifacts) == {"greeting"}
    assert version.model_config == {"prefix": "> "}
    assert version.input_example == example
    assert version.created_by  # the user who ran the command


def test_register_model_from_a_file_path(tmp_path):
    source = tmp_path / "my_model.py"
    source.write_text(
        "from chatmodels import ChatModel, ChatResponse\n\n\n"
        "class Shout(ChatModel):\n"
        "    def predict(self, context, messages, params) -> ChatResponse:\n"
        "        text = messages[-1].content.upper()\n"
        '        message = {"role": "assistant", "content": text}\n'
        '        return ChatResponse(choices=[{"message": message}])\n'
    )

    output = run("register_model", "shout", f"{source}:Shout")

    assert output.startswith("Registered shout version 1 (sha256 ")
    assert ModelVersion.objects.get().class_path == "my_model.py:Shout"


REFUSED = {
    "unknown file": (["echo", "{tmp}/missing.py:Model"], r"file .*missing\.py not found"),
    "unknown module": (["echo", "no_such_module:Model"], r"module 'no_such_module' not found"),
    "unknown class": (
        ["echo", "tests.sample_models:Missing"],
        r"class 'Missing' not found in tests\.sample_models",
    ),
    "not a ChatModel": (
        ["echo", "tests.sample_models:NotAChatModel"],
        r"NotAChatModel is not a subclass of chatmodels\.ChatModel",
    ),
    "name with a slash": (["team/echo", TRIGGER], r"invalid model name 'team/echo'"),
    "name with an at": (["echo@prod", TRIGGER], r"invalid model name 'echo@prod'"),
    "name too long": (["e" * 129, TRIGGER], r"invalid model name 'e{129}'"),
    "empty name": (["", TRIGGER], r"invalid model name ''"),
    "predict raised": (
        ["echo", "tests.sample_models:RaisingModel"],
        r"^predict raised ValueError: model exploded$",
    ),
    "output not a ChatResponse": (
        ["echo", "tests.sample_models:DictOutputModel"],
        r"^predict returned dict, not ChatResponse: \{'choices': \[\{'message'",
    ),
    "output a string": (
        ["echo", "tests.sample_models:StringOutputModel"],
        r"^predict returned str, not ChatResponse: 'hello'$",
    ),
    "unreadable artifact path": (
        ["echo", TRIGGER, "--artifact", "weights={tmp}/missing.bin"],
        r"artifact 'weights': .*missing\.bin does not exist",
    ),
    "artifact option without a name": (
        ["echo", TRIGGER, "--artifact", "{tmp}/weights.bin"],
        r"--artifact expects KEY=VALUE",
    ),
    "tag option without a value": (["echo", TRIGGER, "--tag", "team"], r"--tag expects KEY=VALUE"),
    "missing model config file": (
        ["echo", TRIGGER, "--model-config", "{tmp}/nope.json"],
        r"cannot read model config file .*nope\.json: No such file or directory",
    ),
    "bad JSON in --model-config": (
        ["echo", TRIGGER, "--model-config", "{tmp}/bad.json"],
        r"model config file .*bad\.json is not valid JSON: Expecting",
    ),
    "model config not an object": (
        ["echo", TRIGGER, "--model-config", "{tmp}/list.json"],
        r"model config file .*list\.json must hold an object",
    ),
    "bad JSON in --input-example": (
        ["echo", TRIGGER, "--input-example", "{tmp}/bad.json"],
        r"input example file .*bad\.json is not valid JSON",
    ),
    "input example not a chat request": (
        ["echo", TRIGGER, "--input-example", "{tmp}/list.json"],
        r"invalid input example",
    ),
    "input example without messages": (
        ["echo", TRIGGER, "--input-example", "{tmp}/no_messages.json"],
        r"invalid input example: messages",
    ),
    "caller-supplied signature": (
        ["echo", TRIGGER, "--signature", "{tmp}/list.json"],
        r"signatures are generated automatically; do not pass a signature",
    ),
    "reserved alias": (["echo", TRIGGER, "--alias", "latest"], r"alias 'latest' is reserved"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_register_model_refusals_are_one_line_errors_that_leave_nothing(case, tmp_path):
    args, message = REFUSED[case]
    write_json(tmp_path / "bad.json", '{"messages": [')
    write_json(tmp_path / "list.json", [1, 2])
    write_json(tmp_path / "no_messages.json", {"temperature": 0.2})
    files_before = stored_package_files()

    with pytest.raises(CommandError, match=message) as raised:
        run("register_model", *[arg.replace("{tmp}", str(tmp_path)) for arg in args])

    assert "\n" not in str(raised.value)
    assert not RegisteredModel.objects.exists()
    assert not ModelVersion.objects.exists()
    assert stored_package_files() == files_before


# --- processes --------------------------------------------------------------------------------


def start_manage(*args: str) -> subprocess.Popen:
    """`python manage.py ...` in a new process, on this test's database and package storage."""
    env = {
        **os.environ,  # with this test process's run folder (see settings_test.py)
        "DJANGO_SETTINGS_MODULE": "project.settings_test",
        "CHATMODELS_TEST_DATABASE_NAME": connection.settings_dict["NAME"],
    }
    return subprocess.Popen(
        [sys.executable, "manage.py", *args],
        cwd=REPOSITORY,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_refusal_in_a_real_process_exits_1_with_one_line_and_no_traceback():
    processes = {
        "predict raised": start_manage(
            "register_model", "echo", "tests.sample_models:RaisingModel"
        ),
        "unknown module": start_manage("register_model", "echo", "no_such_module:Model"),
    }
    expected = {
        "predict raised": "CommandError: predict raised ValueError: model exploded",
        "unknown module": "CommandError: module 'no_such_module' not found",
    }

    for case, process in processes.items():
        code, out, err = finish(process)
        assert code == 1, (case, out, err)
        assert out == ""
        assert "Traceback" not in err
        assert len(err.strip().splitlines()) == 1, err
        assert err.startswith(expected[case]), err
    assert not ModelVersion.objects.exists()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_concurrent_registrations_from_processes_get_versions_1_to_n():
    count = 4
    processes = [start_manage("register_model", "shared", TRIGGER) for _ in range(count)]
    results = [finish(process) for process in processes]

    printed = []
    for code, out, err in results:
        assert code == 0, err
        assert len(out.splitlines()) == 1, out
        printed.append(
            int(re.fullmatch(r"Registered shared version (\d+) \(sha256 \w{64}\)\n", out)[1])
        )
    assert sorted(printed) == list(range(1, count + 1))
    versions = ModelVersion.objects.filter(model__name="shared")
    assert sorted(versions.values_list("version", flat=True)) == list(range(1, count + 1))
    packages = {version.package.name for version in versions}
    assert len(packages) == count
    assert packages <= stored_package_files()
    assert RegisteredModel.objects.count() == 1


# --- set_alias --------------------------------------------------------------------------------


def test_set_alias_creates_moves_and_deletes_an_alias():
    run("register_model", "echo", TRIGGER)
    run("register_model", "echo", TRIGGER)

    assert run("set_alias", "echo", "prod", "1") == "echo@prod -> version 1\n"
    assert resolve_version(name="echo", alias="prod").version == 1
    assert run("set_alias", "echo", "prod", "2") == "echo@prod -> version 2\n"
    assert resolve_version(name="echo", alias="prod").version == 2
    assert ModelAlias.objects.count() == 1
    assert run("set_alias", "echo", "prod", "--delete") == "Removed echo@prod\n"
    assert not ModelAlias.objects.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope", "prod", "1"], "model 'nope' not found"),
        (["echo", "prod", "7"], "model 'echo' has no version 7"),
        (["echo", "prod", "--delete"], "model 'echo' has no alias 'prod'"),
        (["nope", "prod", "--delete"], "model 'nope' not found"),
        (["echo", "latest", "1"], "alias 'latest' is reserved"),
        (["echo", "prod"], "give a VERSION, or --delete to remove the alias"),
    ],
)
def test_set_alias_errors(args, message):
    run("register_model", "echo", TRIGGER)

    with pytest.raises(CommandError, match=message):
        run("set_alias", *args)
    assert not ModelAlias.objects.exists()


# --- list_models ------------------------------------------------------------------------------


def test_list_models_prints_a_table_and_names():
    assert run("list_models") == "No models registered yet.\n"
    assert run("list_models", "--names") == ""
    run("register_model", "echo", TRIGGER, "--alias", "prod", "--description", "Echoes.\nMore.")
    run("register_model", "echo", TRIGGER, "--alias", "canary")
    run("register_model", "summarizer", TRIGGER)

    lines = run("list_models").splitlines()

    assert re.split(r"\s{2,}", lines[0]) == ["NAME", "LATEST", "VERSIONS", "ALIASES", "DESCRIPTION"]
    assert re.split(r"\s{2,}", lines[1]) == ["echo", "2", "2", "canary->2, prod->1", "Echoes."]
    assert re.split(r"\s{2,}", lines[2]) == ["summarizer", "1", "1", "-"]
    assert len(lines) == 3
    assert run("list_models", "--names") == "echo\nsummarizer\n"


# --- API keys ---------------------------------------------------------------------------------


def test_create_api_key_prints_the_key_alone_on_the_last_line():
    output = run("create_api_key", "ci")

    raw_key = output.splitlines()[-1]
    key = get_api_key(raw_key)
    assert key is not None and key.name == "ci"
    assert re.fullmatch(r"cm_[A-Za-z0-9_-]{40,}", raw_key)
    assert f"{key.prefix}… for all models" in output.splitlines()[0]
    assert not ApiKey.objects.get(pk=key.id).allowed_models.exists()


def test_create_api_key_limited_to_models():
    run("register_model", "echo", TRIGGER)
    run("register_model", "other", TRIGGER)

    raw_key = run("create_api_key", "ci", "--model", "echo", "--model", "other").splitlines()[-1]

    key = ApiKey.objects.get(pk=get_api_key(raw_key).id)
    assert sorted(key.allowed_models.values_list("name", flat=True)) == ["echo", "other"]


def test_create_api_key_for_an_unknown_model_is_refused():
    with pytest.raises(CommandError, match="model 'nope' not found"):
        run("create_api_key", "ci", "--model", "nope")
    assert not ApiKey.objects.exists()


def test_revoke_api_key_by_prefix():
    raw_key = run("create_api_key", "ci").splitlines()[-1]
    key = get_api_key(raw_key)

    assert run("revoke_api_key", key.prefix) == f"Revoked ci ({key.prefix}…)\n"

    assert get_api_key(raw_key) is None
    with pytest.raises(CommandError, match="no single active API key"):
        run("revoke_api_key", key.prefix)
