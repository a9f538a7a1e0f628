"""The management commands: register_model, set_alias, list_models, archive_version,
create/list/revoke_api_key.

Most tests call the commands in-process; a few start real `manage.py` processes, for the exit
code and stderr people see and for registrations racing from several processes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import connection

from chatmodels import services
from chatmodels.exceptions import VersionNotFound
from chatmodels.models import ApiKey, ModelAlias, ModelTag, ModelVersion, RegisteredModel
from chatmodels.selectors import get_api_key, list_models, resolve_version
from chatmodels.serving import eventloop, runtime
from chatmodels.serving.workers import client as workers
from chatmodels.serving.workers.client import WorkerTraceback
from chatmodels.types import ChatRequest
from tests.live import poll
from tests.test_services import stored_package_files
from tests.upstream import Upstream

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


def test_register_model_sets_the_worker_settings_and_keeps_them_when_left_out():
    run("register_model", "echo", TRIGGER, "--replicas", "2", "--memory-limit-mb", "300")
    run("register_model", "echo", TRIGGER)
    model = RegisteredModel.objects.get()
    assert (model.worker_replicas, model.worker_memory_mb) == (2, 300)

    run("register_model", "echo", TRIGGER, "--memory-limit-mb", "0", "--replicas", "1")

    model.refresh_from_db()
    assert (model.worker_replicas, model.worker_memory_mb) == (1, None)


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
        r"^predict raised ValueError: model exploded at sample_models\.py:67 in predict: "
        r"`raise ValueError\(\"model exploded\"\)`$",
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
# The worker settings out of range: the options given, and what is said.
WORKER_SETTINGS_REFUSED = {
    "--replicas 0": r"^worker_replicas must be a whole number >= 1, got 0$",
    "--memory-limit-mb -5": r"worker_memory_mb must be a whole number >= 0 \(0: no limit\), got -5",
    "--memory-limit-mb lots": r"argument --memory-limit-mb: invalid int value: 'lots'",
}
REFUSED.update(
    (options, (["echo", TRIGGER, *options.split()], message))
    for options, message in WORKER_SETTINGS_REFUSED.items()
)


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
        "predict raised": (
            "CommandError: predict raised ValueError: model exploded at sample_models.py:67"
        ),
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
    with pytest.raises(CommandError, match=rf"^API key ci \({key.prefix}…\) is already revoked$"):
        run("revoke_api_key", key.prefix)


@pytest.mark.parametrize(
    "reference",
    ["the whole key", "the prefix as printed", "the prefix without its …", "8 characters"],
)
def test_revoke_api_key_takes_the_whole_key_or_a_unique_prefix(reference):
    raw_key = run("create_api_key", "ci").splitlines()[-1]
    other_key = _key_with_prefix("other", raw_key[:7] + "!other")  # shares 7 characters
    prefix = raw_key[:12]
    given = {
        "the whole key": raw_key,
        "the prefix as printed": f"{prefix}…",
        "the prefix without its …": prefix,
        "8 characters": raw_key[:8],
    }[reference]

    assert run("revoke_api_key", given) == f"Revoked ci ({prefix}…)\n"

    assert get_api_key(raw_key) is None
    other_key.refresh_from_db()
    assert other_key.is_active


def _key_with_prefix(name: str, prefix: str) -> ApiKey:
    """A key whose prefix is chosen, to make two keys share their first characters."""
    return ApiKey.objects.create(name=name, prefix=prefix, key_hash=ApiKey.hash_key(name))


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("cm_Shared", r"^'cm_Shared' matches 2 API keys \(\w+ \(cm_Shared\w+…\), .*\): give more"),
        ("cm_Nowhere", r"^no API key starts with 'cm_Nowhere'$"),
        ("cm_" + "x" * 40, r"^no API key matches the key given$"),
        ("cm_Sh", r"^give the whole API key or at least its first 8 characters"),
        ("", r"^give the whole API key or at least its first 8 characters"),
    ],
    ids=["ambiguous", "unknown prefix", "unknown key", "too short", "empty"],
)
def test_revoke_api_key_refuses_what_names_no_single_key(given, message):
    _key_with_prefix("first", "cm_SharedAAA")
    _key_with_prefix("second", "cm_SharedBBB")

    with pytest.raises(CommandError, match=message) as raised:
        run("revoke_api_key", given)

    assert "\n" not in str(raised.value)
    assert not ApiKey.objects.filter(revoked_at__isnull=False).exists()


def test_revoke_api_key_prefers_the_active_key_over_a_revoked_one_sharing_its_prefix():
    old = _key_with_prefix("old", "cm_SharedAAA")
    services.revoke_api_key(key=old)
    _key_with_prefix("new", "cm_SharedBBB")

    assert run("revoke_api_key", "cm_Shared…") == "Revoked new (cm_SharedBBB…)\n"


def test_list_api_keys_prints_name_prefix_models_created_and_status():
    assert run("list_api_keys") == "No API keys yet (create one with create_api_key).\n"
    run("register_model", "echo", TRIGGER)
    run("register_model", "other", TRIGGER)
    ci_key = run("create_api_key", "ci pipeline", "--model", "other", "--model", "echo")
    app_key = run("create_api_key", "app").splitlines()[-1]
    run("revoke_api_key", app_key)

    lines = run("list_api_keys").splitlines()

    assert re.split(r"\s{2,}", lines[0]) == ["NAME", "PREFIX", "MODELS", "CREATED", "STATUS"]
    app, ci = (re.split(r"\s{2,}", line) for line in lines[1:])
    assert app[:3] == ["app", f"{app_key[:12]}…", "all"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", app[3])
    assert re.fullmatch(r"revoked \d{4}-\d\d-\d\d \d\d:\d\d", app[4])
    assert ci[:3] == ["ci pipeline", f"{ci_key.splitlines()[-1][:12]}…", "echo, other"]
    assert ci[4] == "active"
    assert len(lines) == 3
    # What it prints is what revoke_api_key takes.
    assert run("revoke_api_key", ci[1]) == f"Revoked ci pipeline ({ci[1]})\n"


def test_list_api_keys_costs_two_queries_however_many_keys(django_assert_num_queries):
    run("register_model", "echo", TRIGGER)
    for index in range(5):
        run("create_api_key", f"key-{index}", "--model", "echo")

    with django_assert_num_queries(2):
        lines = run("list_api_keys").splitlines()
    assert len(lines) == 6


# --- archive_version --------------------------------------------------------------------------


def test_an_archived_version_is_not_chosen_as_latest_but_still_served_by_number_and_alias():
    for _ in range(3):
        run("register_model", "echo", TRIGGER)
    run("set_alias", "echo", "prod", "3")

    output = run("archive_version", "echo", "3")

    assert output == (
        "Archived echo/3: no longer chosen as the latest; still served as echo/3, echo@prod\n"
    )
    assert ModelVersion.objects.get(version=3).status == ModelVersion.Status.ARCHIVED
    assert resolve_version(name="echo").version == 2
    assert resolve_version(name="echo", version=3).version == 3
    assert resolve_version(name="echo", alias="prod").version == 3
    assert list_models().get().latest_version == 2
    assert re.split(r"\s{2,}", run("list_models").splitlines()[1])[:3] == ["echo", "2", "3"]

    assert run("archive_version", "echo", "2") == (
        "Archived echo/2: no longer chosen as the latest; still served as echo/2\n"
    )
    assert resolve_version(name="echo").version == 1
    run("archive_version", "echo", "1")
    with pytest.raises(VersionNotFound, match="model 'echo' has no ready version"):
        resolve_version(name="echo")

    assert run("archive_version", "echo", "3", "--restore") == (
        "Restored echo/3: it may be chosen as the latest again\n"
    )
    assert resolve_version(name="echo").version == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope", "1"], r"^model 'nope' not found$"),
        (["echo", "7"], r"^model 'echo' has no version 7$"),
        (["echo", "7", "--restore"], r"^model 'echo' has no version 7$"),
    ],
)
def test_archive_version_errors_are_one_line(args, message):
    run("register_model", "echo", TRIGGER)

    with pytest.raises(CommandError, match=message):
        run("archive_version", *args)
    assert ModelVersion.objects.get().status == ModelVersion.Status.READY


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_key_and_version_commands_in_real_processes():
    run("register_model", "echo", TRIGGER)
    run("register_model", "echo", TRIGGER)
    raw_key = run("create_api_key", "ci").splitlines()[-1]
    _key_with_prefix("twin-a", "cm_TwinAAAAA")
    _key_with_prefix("twin-b", "cm_TwinABBBB")
    processes = {
        "ambiguous": start_manage("revoke_api_key", "cm_TwinA…"),
        "archive": start_manage("archive_version", "echo", "2"),
        "list": start_manage("list_api_keys"),
    }
    results = {case: finish(process) for case, process in processes.items()}
    revoke = finish(start_manage("revoke_api_key", f"{raw_key[:12]}…"))

    code, out, err = results["ambiguous"]
    assert code == 1 and out == ""
    assert err.startswith("CommandError: 'cm_TwinA' matches 2 API keys"), err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    code, out, err = results["archive"]
    assert code == 0, err
    assert out.startswith("Archived echo/2: no longer chosen as the latest")
    assert resolve_version(name="echo").version == 1
    code, out, err = results["list"]
    assert code == 0, err
    assert f"{raw_key[:12]}…" in out and "cm_TwinAAAAA…" in out
    assert revoke == (0, f"Revoked ci ({raw_key[:12]}…)\n", "")
    assert get_api_key(raw_key) is None


# --- restart_workers --------------------------------------------------------------------------


def test_restart_workers_restarts_a_running_model_and_says_where():
    run("register_model", "echo", TRIGGER)
    version = resolve_version(name="echo")
    request = ChatRequest.from_dict({"messages": [{"role": "user", "content": "hi"}]})
    eventloop.run(runtime.invoke(version, request, served_name="echo"))
    [before] = workers.snapshot()

    output = run("restart_workers", "echo")

    assert output == "Restarting the workers of echo in 1 server process of this host\n"
    assert poll(lambda: before.pid not in {w.pid for w in workers.snapshot()}, until=bool)
    assert run("restart_workers", "echo") == (
        "No workers of echo run on this host; its next request starts them\n"
    )


def test_restart_workers_of_an_unknown_model_is_a_one_line_error():
    with pytest.raises(CommandError, match=r"^model 'nope' not found$"):
        run("restart_workers", "nope")


# --- registration from anywhere, and its errors -------------------------------------------------


def _readme_model() -> str:
    """The model of the README's "Write a model", as printed there."""
    readme = (REPOSITORY / "README.md").read_text()
    return re.search(r"```python\n(# my_model\.py\n.*?)```", readme, re.S).group(1)


def _manage_in(folder: Path, *args: str) -> subprocess.CompletedProcess:
    """`python /path/to/manage.py ARGS` run from `folder`, as the README shows it."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "project.settings_test",
        "CHATMODELS_TEST_DATABASE_NAME": connection.settings_dict["NAME"],
    }
    return subprocess.run(
        [sys.executable, str(REPOSITORY / "manage.py"), *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_readme_model_registers_from_its_own_folder_by_file_and_by_module(tmp_path, client):
    (tmp_path / "my_model.py").write_text(_readme_model())

    by_file = _manage_in(tmp_path, "register_model", "shout", "my_model.py:Shout", "--alias=prod")
    by_module = _manage_in(tmp_path, "register_model", "shout", "my_model:Shout")

    assert by_file.returncode == 0, by_file.stderr
    assert by_file.stdout.startswith("Registered shout version 1 (sha256 ")
    assert by_module.returncode == 0, by_module.stderr
    assert by_module.stdout.startswith("Registered shout version 2 (sha256 ")
    _, raw_key = services.create_api_key(name="readme")
    parts = [
        {"type": "text", "text": "hello"},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
        {"type": "text", "text": "there"},
    ]
    for model, content in [("shout@prod", "hello"), ("shout/2", parts)]:
        reply = client.post(
            "/v1/chat/completions",
            {"model": model, "messages": [{"role": "user", "content": content}]},
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {raw_key}",
        )
        assert reply.status_code == 200, reply.content
        expected = "HELLO" if content == "hello" else "HELLO THERE"
        assert reply.json()["choices"][0]["message"]["content"] == expected


def test_a_module_target_not_found_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    with pytest.raises(CommandError) as raised:
        run("register_model", "counter", "counter:Counter")

    assert str(raised.value) == (
        f"module 'counter' not found in the current folder ({tmp_path}) or the installed"
        " packages; for a file, give its path: path/to/counter.py:Class"
    )


def test_a_model_that_raises_at_registration_is_refused_with_the_authors_file_and_line(tmp_path):
    source = tmp_path / "my_model.py"
    source.write_text(
        textwrap.dedent(
            """\
            from chatmodels import ChatModel


            def ratio(text):
                return len(text) / 0


            class Broken(ChatModel):
                def predict(self, context, messages, params):
                    return ratio(messages[-1].content)
            """
        )
    )

    with pytest.raises(CommandError) as raised:
        run("register_model", "broken", f"{source}:Broken")

    assert str(raised.value) == (
        "predict raised ZeroDivisionError: division by zero at my_model.py:5 in ratio:"
        " `return len(text) / 0`"
    )
    # --traceback shows the author's frames, by file name, under the one-line error: the
    # model ran in a worker process, whose traceback is the cause.
    cause = raised.value.__cause__.__cause__
    assert isinstance(cause, WorkerTraceback)
    path = str(source.resolve())
    frames = re.findall(r'File "([^"]+)", line (\d+), in (\w+)', str(cause))
    assert frames[-2:] == [(path, "10", "predict"), (path, "5", "ratio")]
    assert "ZeroDivisionError: division by zero" in str(cause)


def test_errors_in_the_authors_init_and_module_name_their_line(tmp_path):
    (tmp_path / "init_fails.py").write_text(
        "from chatmodels import ChatModel\n\n\n"
        "class Model(ChatModel):\n"
        "    def __init__(self):\n"
        "        self.settings = {}['missing']\n\n"
        "    def predict(self, context, messages, params):\n"
        "        return None\n"
    )
    (tmp_path / "import_fails.py").write_text("import json\n\nSETTINGS = json.loads('{')\n")

    with pytest.raises(CommandError) as init_error:
        run("register_model", "m", f"{tmp_path / 'init_fails.py'}:Model")
    with pytest.raises(CommandError) as import_error:
        run("register_model", "m", f"{tmp_path / 'import_fails.py'}:Model")

    assert str(init_error.value) == (
        "creating Model() raised KeyError: 'missing' at init_fails.py:6 in __init__:"
        " `self.settings = {}['missing']`"
    )
    assert str(import_error.value).startswith(
        "importing import_fails.py raised JSONDecodeError: Expecting property name enclosed in"
    )
    assert str(import_error.value).endswith(
        " at import_fails.py:3 in <module>: `SETTINGS = json.loads('{')`"
    )


# --- setup_demo (what ./scripts/serve runs) -----------------------------------------------------


def test_setup_demo_makes_what_is_missing_and_reuses_the_rest(tmp_path):
    password_file, key_file = tmp_path / "admin-password", tmp_path / "demo-api-key"
    files = ["--password-file", str(password_file), "--key-file", str(key_file)]

    first = run("setup_demo", *files).splitlines()

    assert first == [
        "==> Applying database migrations",
        "==> Registering the demo model echo (examples/echo.py)",
        f"==> Creating the admin user admin (password in {password_file})",
        f"==> Creating a demo API key for all models, kept in {key_file}",
    ]
    assert key_file.stat().st_mode & 0o777 == password_file.stat().st_mode & 0o777 == 0o600
    key = key_file.read_text().strip()
    assert get_api_key(key) is not None
    assert resolve_version(name="echo", alias="prod").version == 1
    assert User.objects.get(username="admin").check_password(password_file.read_text().strip())

    second = run("setup_demo", *files).splitlines()

    assert second == [
        "==> Applying database migrations",
        "==> Demo model echo is registered",
        f"==> Admin user admin exists (password in {password_file})",
        f"==> Reusing the demo API key in {key_file}",
    ]
    assert key_file.read_text().strip() == key
    assert ModelVersion.objects.count() == 1 and ApiKey.objects.count() == 1

    run("revoke_api_key", key)
    third = run("setup_demo", *files).splitlines()

    assert third[-1] == f"==> Creating a demo API key for all models, kept in {key_file}"
    assert key_file.read_text().strip() != key
    assert get_api_key(key_file.read_text().strip()) is not None


def test_setup_demo_registers_the_upstream_it_is_given_once(tmp_path, monkeypatch):
    files = ["--password-file", str(tmp_path / "p"), "--key-file", str(tmp_path / "k")]
    with Upstream() as upstream:
        monkeypatch.setenv("UPSTREAM_BASE_URL", upstream.base_url)
        monkeypatch.setenv("UPSTREAM_MODEL", "llama")

        first = run("setup_demo", *files).splitlines()
        second = run("setup_demo", *files).splitlines()

    assert f"==> Registering upstream: OpenAICompatibleModel forwarding to {upstream.base_url}" in (
        first
    )
    assert f"==> Model upstream forwards to {upstream.base_url}" in second
    version = resolve_version(name="upstream")
    assert version.version == 1  # unchanged settings: no new version
    assert upstream.requests[-1]["body"]["model"] == "llama"  # its save-time predict went there
