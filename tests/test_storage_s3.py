"""Packages in S3-compatible object storage (moto's real server on loopback): registered by one
process, served by another that has no local copy, digest verified, tampering refused.
"""

from __future__ import annotations

import hashlib
import json
import textwrap

import pytest

from tests.live import chat_body, deployment, http, moto_s3

pytestmark = pytest.mark.slow

GREETER = textwrap.dedent(
    """
    from chatmodels import ChatModel, ChatResponse


    class Greeter(ChatModel):
        def load_context(self, context):
            with open(context.artifacts["greeting"], encoding="utf-8") as greeting:
                self.greeting = greeting.read().strip()

        def predict(self, context, messages, params):
            text = f"{self.greeting}, {messages[-1].content} ({context.model_config['build']})"
            return ChatResponse(choices=[{"message": {"role": "assistant", "content": text}}])
    """
)


def _register_greeter(installation, tmp_path, *, build: str, greeting: str) -> dict:
    """Register the greeter from files deleted right after; returns what the command printed."""
    source = tmp_path / f"greeter_{build}.py"
    source.write_text(GREETER)
    artifact = tmp_path / f"greeting_{build}.txt"
    artifact.write_text(greeting)
    config = tmp_path / f"config_{build}.json"
    config.write_text(json.dumps({"build": build}))
    output = installation.manage(
        "register_model",
        "greeter",
        f"{source}:Greeter",
        "--artifact",
        f"greeting={artifact}",
        "--model-config",
        str(config),
        host="registrar",
    ).stdout
    for path in (source, artifact, config):
        path.unlink()
    return output


def test_package_in_s3_is_served_by_another_process_without_a_local_copy(tmp_path):
    with moto_s3(tmp_path) as s3, deployment(tmp_path, s3=s3) as installation:
        output = _register_greeter(installation, tmp_path, build="b1", greeting="Bonjour")
        assert "version 1" in output

        # The package is an object in the bucket, under the configured location, and nowhere
        # on the registering host's disk.
        keys = s3.keys()
        assert len(keys) == 1, keys
        assert keys[0].startswith("chatmodels/packages/greeter/") and keys[0].endswith(".zip")
        registrar_packages = tmp_path / "registrar" / "packages"
        assert not registrar_packages.exists() or not any(registrar_packages.rglob("*.zip"))
        stored_digest = hashlib.sha256(s3.read(keys[0])).hexdigest()

        key = installation.create_api_key()
        server = installation.start_server("server", workers=1)
        server_cache = tmp_path / "server" / "cache"
        assert not server_cache.exists() or not any(server_cache.iterdir())

        ready = http("GET", f"{server}/ready")
        assert ready.status == 200, ready.body

        detail = http("GET", f"{server}/api/models/greeter/versions/1/", key=key)
        assert detail.status == 200, detail.body
        assert detail.body["digest"] == stored_digest

        reply = http(
            "POST", f"{server}/api/models/greeter/invocations", body=chat_body("Ada"), key=key
        )
        assert reply.content() == "Bonjour, Ada (b1)", installation.logs()
        # The artifact came out of the bucket into this process's own cache.
        unpacked = [
            p for p in server_cache.rglob("*") if p.is_file() and p.read_bytes() == b"Bonjour"
        ]
        assert unpacked, sorted(map(str, server_cache.rglob("*")))


def test_tampered_object_in_s3_is_refused_not_served(tmp_path):
    with moto_s3(tmp_path) as s3, deployment(tmp_path, s3=s3) as installation:
        _register_greeter(installation, tmp_path, build="b1", greeting="Hello")
        (first_key,) = s3.keys()
        _register_greeter(installation, tmp_path, build="b2", greeting="Evil")
        (second_key,) = set(s3.keys()) - {first_key}

        # Someone with write access to the bucket swaps version 2's bytes for other bytes.
        original = s3.read(second_key)
        forged = original.replace(b"Evil", b"Good") if b"Evil" in original else original + b"\0"
        assert forged != original
        s3.write(second_key, forged)

        key = installation.create_api_key()
        server = installation.start_server("server", workers=1)
        url = f"{server}/api/models/greeter/invocations"

        refused = http("POST", f"{url}?version=2", body=chat_body("Ada"), key=key)
        assert refused.status == 500, refused.body
        assert set(refused.body["error"]) >= {"message", "type", "code"}
        assert "Good" not in json.dumps(refused.body) and "Evil" not in json.dumps(refused.body)
        assert "Traceback" not in json.dumps(refused.body)

        # Refused on every request, not only the first; the untouched version is still served.
        assert http("POST", f"{url}?version=2", body=chat_body("Ada"), key=key).status == 500
        assert http("POST", f"{url}?version=1", body=chat_body("Ada"), key=key).content() == (
            "Hello, Ada (b1)"
        )
        log = installation.logs()
        assert "cannot load greeter/2" in log, log
