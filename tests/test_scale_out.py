"""Scale-out: two server instances (two "hosts", each with its own local folders) sharing one
database (PostgreSQL when the run has one, else one SQLite file) and one S3-compatible store.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import pytest
from openai import DefaultHttpxClient, OpenAI

from tests.live import ROOT, chat_body, deployment, http, moto_s3

pytestmark = pytest.mark.slow

# Each version answers with its build name, so a reply says which version served it.
BUILD_MODEL = textwrap.dedent(
    """
    from chatmodels import ChatModel, ChatResponse


    class Build(ChatModel):
        def predict(self, context, messages, params):
            text = f"{context.model_config['build']}: {messages[-1].content}"
            return ChatResponse(choices=[{"message": {"role": "assistant", "content": text}}])
    """
)


def _model_file(tmp_path):
    source = tmp_path / "build_model.py"
    source.write_text(BUILD_MODEL)
    return source


def ask(url: str, key: str, text: str) -> str:
    """POST a chat to an invocations URL; the reply's text."""
    return http("POST", url, body=chat_body(text), key=key).content()


def _config(tmp_path, build: str) -> str:
    path = tmp_path / f"{build}.json"
    path.write_text(json.dumps({"build": build}))
    return str(path)


def test_model_registered_on_one_instance_is_served_by_the_other_and_alias_moves_at_once(
    tmp_path,
):
    source = _model_file(tmp_path)
    with moto_s3(tmp_path) as s3, deployment(tmp_path, s3=s3) as installation:
        host_a = installation.start_server("host-a", workers=1)
        host_b = installation.start_server("host-b")
        key = installation.create_api_key()

        # Registered on host A (its own environment and folders); host B has never seen it.
        installation.manage(
            "register_model",
            "shared",
            f"{source}:Build",
            "--alias",
            "prod",
            "--model-config",
            _config(tmp_path, "one"),
            host="host-a",
        )
        invocations_b = f"{host_b}/api/models/shared/invocations"
        assert ask(invocations_b, key, "hi") == "one: hi"
        assert ask(f"{invocations_b}?alias=prod", key, "x") == "one: x"

        # Version 2, registered on host A: "latest" moves with it, the alias stays until moved.
        installation.manage(
            "register_model",
            "shared",
            f"{source}:Build",
            "--model-config",
            _config(tmp_path, "two"),
            host="host-a",
        )
        assert ask(invocations_b, key, "hi") == "two: hi"
        assert ask(f"{invocations_b}?alias=prod", key, "x") == "one: x"

        # The alias is moved from host A's side; host B's very next requests, on any of its
        # workers, follow it, through plain HTTP and through the OpenAI SDK.
        client_b = OpenAI(
            base_url=f"{host_b}/v1",
            api_key=key,
            max_retries=0,
            http_client=DefaultHttpxClient(trust_env=False, timeout=30),  # loopback: no proxy
        )
        for target, expected in (("2", "two"), ("1", "one"), ("2", "two")):
            installation.manage("set_alias", "shared", "prod", target, host="host-a")
            for attempt in range(4):  # host B has two workers: any of them may answer
                assert ask(f"{invocations_b}?alias=prod", key, "x") == f"{expected}: x", attempt
            completion = client_b.chat.completions.create(
                model="shared@prod", messages=[{"role": "user", "content": "sdk"}]
            )
            assert completion.choices[0].message.content == f"{expected}: sdk"

        # Host A agrees, and both list the same registry.
        invocations_a = f"{host_a}/api/models/shared/invocations"
        assert ask(f"{invocations_a}?alias=prod", key, "a") == "two: a"
        listing_a = http("GET", f"{host_a}/api/models/shared/", key=key).body
        listing_b = http("GET", f"{host_b}/api/models/shared/", key=key).body
        assert listing_a == listing_b
        assert listing_b["aliases"] == {"prod": 2} and listing_b["latest_version"] == 2

        # One package per version, in the shared bucket; no host has a local package folder.
        assert len(s3.keys()) == 2
        for host in ("host-a", "host-b"):
            assert not (tmp_path / host / "packages").exists()


def test_hosts_registering_one_name_at_once_get_distinct_versions(tmp_path):
    """Several hosts register the same name at the same moment, into the shared database and
    bucket: each gets its own number, none fails, and each number serves what it registered."""
    source = _model_file(tmp_path)
    processes = 4
    with moto_s3(tmp_path) as s3, deployment(tmp_path, s3=s3) as installation:
        started = [
            subprocess.Popen(
                [
                    sys.executable,
                    "manage.py",
                    "register_model",
                    "contended",
                    f"{source}:Build",
                    "--model-config",
                    _config(tmp_path, f"build{number}"),
                ],
                cwd=ROOT,
                env=installation.env(f"host-{number}"),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                text=True,
            )
            for number in range(processes)
        ]
        deadline = time.monotonic() + 180
        outputs = []
        try:
            for process in started:
                remaining = max(1.0, deadline - time.monotonic())
                output, _ = process.communicate(timeout=remaining)
                outputs.append((process.returncode, output))
        finally:
            for process in started:
                if process.poll() is None:
                    process.kill()
                    process.wait(timeout=15)
        assert all(code == 0 for code, _ in outputs), outputs
        assert len(s3.keys()) == processes  # no lost or duplicated package

        key = installation.create_api_key()
        server = installation.start_server("server", workers=1)
        versions = http("GET", f"{server}/api/models/contended/versions/", key=key).body
        numbers = sorted(item["version"] for item in versions["results"])
        assert numbers == list(range(1, processes + 1))
        # Each number serves the build that registered it, and each build got exactly one.
        builds = set()
        for number in numbers:
            builds.add(ask(f"{server}/api/models/contended/invocations?version={number}", key, "x"))
        assert builds == {f"build{number}: x" for number in range(processes)}
