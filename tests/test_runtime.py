"""The serving runtime: what a model returns reaches the client as strict JSON or as a 502 saying
what was wrong, and a version's artifacts are served only as its package holds them.
"""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

import pytest

from chatmodels import ChatChunk, ChatModel, ChatResponse
from chatmodels.serving import runtime
from tests.api.calls import completion_text, error_of, post, stream_events
from tests.helpers import chat, make_key, register

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_loaded_models():
    runtime.stop_workers()
    yield
    runtime.stop_workers()


@pytest.fixture
def key(db) -> str:
    return make_key(name="everything")[1]


def _deep(levels: int) -> dict:
    value: dict = {}
    for _ in range(levels):
        value = {"inner": value}
    return value


def _custom_outputs(kind: str):
    if kind == "set":
        return {"tags": {"a", "b"}}
    if kind == "datetime":
        return {"when": datetime.datetime(2026, 1, 1)}
    if kind == "nan":
        return {"score": float("nan")}
    if kind == "infinity":
        return {"scores": [0.5, float("-inf")]}
    if kind == "tuple-key":
        return {(1, 2): "pair"}
    if kind == "deep":
        return _deep(100_000)
    return {"fine": [1, 2.5, "three", True]}


class CustomOutputsModel(ChatModel):
    """Answers "ok", with `custom_outputs` of the kind the message names (see _custom_outputs)."""

    def predict(self, context, messages, params):
        kind = messages[-1].content
        if kind == "tuple-key":  # refused at construction: set afterwards, as a model may
            response = ChatResponse(choices=[{"message": {"role": "assistant", "content": "ok"}}])
            response.custom_outputs = _custom_outputs(kind)
            return response
        return ChatResponse(
            choices=[{"message": {"role": "assistant", "content": "ok"}}],
            custom_outputs=_custom_outputs(kind),
        )


class SurrogateModel(ChatModel):
    """Answers with text holding a lone surrogate, as a broken tokenizer might."""

    def predict(self, context, messages, params):
        return ChatResponse(choices=[{"message": {"role": "assistant", "content": "bad \ud800"}}])


class BadSecondChunkModel(ChatModel):
    """Streams one good chunk, then one the message chooses: a lone surrogate, or a NaN
    log probability set after the chunk was built."""

    def predict(self, context, messages, params):
        return ChatResponse(choices=[{"message": {"role": "assistant", "content": "ok"}}])

    def predict_stream(self, context, messages, params):
        yield ChatChunk(choices=[{"delta": {"role": "assistant", "content": "ok "}}])
        if messages[-1].content == "surrogate":
            yield ChatChunk(choices=[{"delta": {"content": "\udc00"}}])
        else:
            chunk = ChatChunk(
                choices=[
                    {
                        "delta": {"content": "x"},
                        "logprobs": {
                            "content": [{"token": "x", "logprob": -1.0, "top_logprobs": []}]
                        },
                    }
                ]
            )
            chunk.choices[0].logprobs.content[0].logprob = float("nan")
            yield chunk


def _strict(content: bytes):
    """Parse as strict JSON: NaN and Infinity refused, as JavaScript's JSON.parse does."""

    def refuse(constant: str):
        raise AssertionError(f"bare {constant} in the answer")

    return json.loads(content, parse_constant=refuse)


# --- model output ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("set", "custom_outputs.tags: set is not JSON-serializable"),
        ("datetime", "custom_outputs.when: datetime is not JSON-serializable"),
        ("nan", "custom_outputs.score: nan is not a JSON number"),
        ("infinity", "custom_outputs.scores[1]: -inf is not a JSON number"),
        ("tuple-key", "custom_outputs: expected str keys, got tuple (1, 2)"),
        ("deep", "nested too deeply"),
    ],
)
@pytest.mark.parametrize("path", ["/api/models/outputs/invocations", "/v1/chat/completions"])
def test_custom_outputs_that_are_not_json_are_a_502_saying_what(client, key, path, kind, expected):
    register(name="outputs", model=CustomOutputsModel())

    response = post(client, path, chat(kind, model="outputs"), key=key)

    error = error_of(response, 502)
    assert error["type"] == "server_error"
    assert error["code"] == "invalid_model_output"
    assert expected in error["message"]
    _strict(response.content)
    # The worker goes on serving.
    ok = post(client, path, chat("fine", model="outputs"), key=key)
    assert _strict(ok.content)["custom_outputs"] == {"fine": [1, 2.5, "three", True]}


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/models/surrogate/invocations", chat("hi"), "choices[0].message.content"),
        ("/v1/responses", {"model": "surrogate", "input": "hi"}, "output[0].content[0].text"),
    ],
)
def test_a_lone_surrogate_in_the_answer_is_a_502_not_invalid_json(client, key, path, body, field):
    register(name="surrogate", model=SurrogateModel())

    response = post(client, path, body, key=key)

    error = error_of(response, 502)
    assert error["code"] == "invalid_model_output"
    assert f"{field}: contains a lone UTF-16 surrogate" in error["message"]
    assert b"\\ud800" not in response.content


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("surrogate", "choices[0].delta.content: contains a lone UTF-16 surrogate"),
        ("nan", "choices[0].logprobs.content[0].logprob"),
    ],
)
def test_a_bad_chunk_mid_stream_ends_it_with_an_invalid_output_event(client, key, text, expected):
    register(name="chunks", model=BadSecondChunkModel())

    response = post(client, "/api/models/chunks/invocations", chat(text, stream=True), key=key)

    first, last = stream_events(response)
    assert first["choices"][0]["delta"]["content"] == "ok "
    assert last["error"]["code"] == "invalid_model_output"
    assert expected in last["error"]["message"]


# --- the artifact cache ------------------------------------------------------------------------


class ArtifactReportModel(ChatModel):
    """Answers with every file of its `data` artifact folder, as `path=content;…`."""

    def load_context(self, context):
        root = Path(context.artifacts["data"])
        self.report = ";".join(
            f"{path.relative_to(root).as_posix()}={path.read_text()}"
            for path in sorted(root.rglob("*"))
            if path.is_file()
        )

    def predict(self, context, messages, params):
        return ChatResponse(choices=[{"message": {"role": "assistant", "content": self.report}}])


TRUE_REPORT = "a.txt=alpha;sub/b.txt=beta"


@pytest.fixture
def with_artifacts(tmp_path):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.txt").write_text("alpha")
    (data / "sub" / "b.txt").write_text("beta")
    return register(name="report", model=ArtifactReportModel(), artifacts={"data": data})


def _cached_folder(settings, version) -> Path:
    # Where the version's workers unpack its package: CHATMODELS_WORKER_DIR (by default
    # CHATMODELS_CACHE_DIR/workers), one folder per digest.
    models = Path(settings.CHATMODELS_CACHE_DIR) / "workers" / "models" / version.digest
    return models / version.digest / "artifacts" / "data"


def _plant(folder: Path, tmp_path: Path) -> None:
    (folder / "sub" / "planted.txt").write_text("evil")


def _alter(folder: Path, tmp_path: Path) -> None:
    (folder / "a.txt").write_text("tampered")


def _remove(folder: Path, tmp_path: Path) -> None:
    (folder / "sub" / "b.txt").unlink()


def _swap_for_a_symlink(folder: Path, tmp_path: Path) -> None:
    forged = tmp_path / "forged"
    (forged / "sub").mkdir(parents=True)
    (forged / "a.txt").write_text("forged")
    (forged / "sub" / "b.txt").write_text("beta")
    for path in sorted(folder.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    folder.rmdir()
    folder.symlink_to(forged, target_is_directory=True)


@pytest.mark.parametrize("tamper", [_plant, _alter, _remove, _swap_for_a_symlink])
def test_a_tampered_artifact_cache_is_unpacked_again_from_the_package(
    client, key, settings, tmp_path, with_artifacts, capfd, tamper
):
    url = "/api/models/report/invocations"
    assert completion_text(post(client, url, chat(), key=key)) == TRUE_REPORT
    folder = _cached_folder(settings, with_artifacts)
    tamper(folder, tmp_path)
    runtime.stop_workers()  # a new process, or a restart, loads the version again

    capfd.readouterr()
    answer = completion_text(post(client, url, chat(), key=key))

    assert answer == TRUE_REPORT
    assert not folder.is_symlink()
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == [
        "a.txt",
        "sub/b.txt",
    ]
    # Said in the log of the worker that unpacked it again (its stderr is the server's).
    assert "does not match its package" in capfd.readouterr().err


def test_an_intact_artifact_cache_is_reused_as_it_is(client, key, settings, with_artifacts):
    url = "/api/models/report/invocations"
    assert completion_text(post(client, url, chat(), key=key)) == TRUE_REPORT
    folder = _cached_folder(settings, with_artifacts)
    inode = os.stat(folder / "a.txt").st_ino
    runtime.stop_workers()

    assert completion_text(post(client, url, chat(), key=key)) == TRUE_REPORT
    assert os.stat(folder / "a.txt").st_ino == inode
