"""Packaging: loading targets, building and opening packages, digests, save-time validation."""

from __future__ import annotations

import io
import json
import linecache
import logging
import os
import pickle
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from chatmodels import ChatChunk, ChatModel, ChatResponse
from chatmodels.exceptions import (
    InvalidModelOutput,
    InvalidTarget,
    ModelRaised,
    PackageIntegrityError,
    RegistrationError,
)
from chatmodels.packaging import (
    build_package,
    check_chunk,
    check_response,
    load_target,
    open_package,
    sha256_bytes,
    validate_model,
)
from chatmodels.signature import DEFAULT_INPUT_EXAMPLE, chat_signature
from tests import sample_models
from tests.helpers import make_key, register

REPO_ROOT = Path(__file__).resolve().parents[1]

COUNTING_MODEL = """
from chatmodels import ChatModel, ChatResponse

ANSWER = "{answer}"


def shout(text):
    return text.upper()


class Counting(ChatModel):
    def load_context(self, context):
        self.loads = getattr(self, "loads", 0) + 1

    def predict(self, context, messages, params):
        text = f"{{shout(ANSWER)}} loads={{self.loads}}"
        return ChatResponse(choices=[{{"message": {{"role": "assistant", "content": text}}}}])
"""

# Opens a package in a fresh interpreter and prints what predict answers.
OPEN_IN_FRESH_PROCESS = """
import json, sys
from pathlib import Path
from chatmodels.packaging import open_package, validate_model
from chatmodels.signature import DEFAULT_INPUT_EXAMPLE
data = Path(sys.argv[1]).read_bytes()
loaded = open_package(data, expected_digest=sys.argv[2], work_dir=sys.argv[3])
response = validate_model(loaded, DEFAULT_INPUT_EXAMPLE)
print(json.dumps({"content": response.choices[0].message.content}))
"""


def write_model(path: Path, answer: str = "v1") -> Path:
    path.write_text(COUNTING_MODEL.format(answer=answer))
    return path


def build(model: ChatModel, **options):
    options.setdefault("input_example", DEFAULT_INPUT_EXAMPLE)
    options.setdefault("signature", chat_signature())
    return build_package(model, **options)


def open_built(built, work_dir: Path):
    return open_package(built.data, expected_digest=built.digest, work_dir=work_dir)


def answer(loaded) -> str:
    return validate_model(loaded, DEFAULT_INPUT_EXAMPLE).choices[0].message.content


# ---------------------------------------------------------------------------------------------
# load_target


def test_load_target_imports_a_module_class():
    assert load_target("tests.sample_models:TriggerModel") is sample_models.TriggerModel


def test_load_target_imports_a_class_from_a_file(tmp_path):
    path = write_model(tmp_path / "my_model.py")

    cls = load_target(f"{path}:Counting")

    assert cls.__name__ == "Counting"
    assert issubclass(cls, ChatModel)


def test_load_target_accepts_a_path_relative_to_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "models").mkdir()
    write_model(tmp_path / "models" / "relative.py")
    monkeypatch.chdir(tmp_path)

    assert load_target("models/relative.py:Counting").__name__ == "Counting"


def test_load_target_of_a_file_can_import_its_siblings(tmp_path):
    (tmp_path / "sibling_words.py").write_text("WORD = 'from a sibling'\n")
    (tmp_path / "uses_sibling.py").write_text(
        textwrap.dedent(
            """
            from chatmodels import ChatModel, ChatResponse
            from sibling_words import WORD

            class Sibling(ChatModel):
                def predict(self, context, messages, params):
                    message = {"role": "assistant", "content": WORD}
                    return ChatResponse(choices=[{"message": message}])
            """
        )
    )

    cls = load_target(f"{tmp_path / 'uses_sibling.py'}:Sibling")

    assert cls().predict(None, [], None).choices[0].message.content == "from a sibling"
    assert str(tmp_path) not in sys.path


FILE_CASES = {
    "raises.py": ("raise RuntimeError('boom at import')\n", "Model", ["raises.py raised", "boom"]),
    "syntax.py": ("def broken(:\n", "Model", ["syntax.py raised SyntaxError"]),
    "needs_dep.py": (
        "import surely_not_installed_dependency\n",
        "Model",
        ["needs_dep.py raised ModuleNotFoundError", "surely_not_installed_dependency"],
    ),
    "abstract.py": (
        "from chatmodels import ChatModel\nclass Model(ChatModel):\n    pass\n",
        "Model",
        ["does not implement predict()"],
    ),
    "no_class.py": ("X = 1\n", "Model", ["class 'Model' not found"]),
    "not_class.py": ("def Model():\n    pass\n", "Model", ["is a function, not a class"]),
}


@pytest.mark.parametrize("file_name", sorted(FILE_CASES))
def test_load_target_file_failures_raise_invalid_target(tmp_path, file_name):
    source, class_name, fragments = FILE_CASES[file_name]
    (tmp_path / file_name).write_text(source)

    with pytest.raises(InvalidTarget) as caught:
        load_target(f"{tmp_path / file_name}:{class_name}")

    message = str(caught.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize(
    ("target", "fragments"),
    [
        ("no_colon_here", ["must look like 'package.module:Class' or 'path/file.py:Class'"]),
        ("tests.sample_models:", ["must look like"]),
        (":TriggerModel", ["must look like"]),
        ("tests.no_such_module:Model", ["module 'tests.no_such_module' not found"]),
        ("no_such_package_at_all.models:Model", ["not found"]),
        ("tests.sample_models:Missing", ["class 'Missing' not found in tests.sample_models"]),
        ("tests.sample_models:_reply", ["is a function, not a class"]),
        ("tests.sample_models:NotAChatModel", ["not a subclass of chatmodels.ChatModel"]),
        ("chatmodels.base:ModelContext", ["not a subclass of chatmodels.ChatModel"]),
        ("chatmodels.base:ChatModel", ["does not implement predict()"]),
    ],
)
def test_load_target_module_failures_raise_invalid_target(target, fragments):
    with pytest.raises(InvalidTarget) as caught:
        load_target(target)

    message = str(caught.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message
    assert isinstance(caught.value, RegistrationError)


def test_load_target_missing_file_names_it(tmp_path):
    missing = tmp_path / "nowhere" / "model.py"

    with pytest.raises(InvalidTarget, match=r"file .*model\.py not found"):
        load_target(f"{missing}:Model")


# ---------------------------------------------------------------------------------------------
# build_package / open_package


def test_round_trip_reaches_artifacts_and_model_config(tmp_path):
    greeting = tmp_path / "greeting.txt"
    greeting.write_text("hello from an artifact\n")
    folder = tmp_path / "vocab"
    (folder / "nested").mkdir(parents=True)
    (folder / "nested" / "words.txt").write_text("a b c")

    built = build(
        sample_models.ConfiguredModel(),
        artifacts={"greeting": greeting, "vocab": folder},
        model_config={"prefix": "> "},
    )
    greeting.unlink()  # the package holds its own copy
    loaded = open_built(built, tmp_path / "work")

    assert answer(loaded) == "> hello from an artifact"
    assert loaded.context.model_config == {"prefix": "> "}
    assert Path(loaded.context.artifacts["greeting"]).read_text() == "hello from an artifact\n"
    vocab = Path(loaded.context.artifacts["vocab"])
    assert (vocab / "nested" / "words.txt").read_text() == "a b c"
    assert (tmp_path / "work" / built.digest) in vocab.parents
    assert loaded.digest == built.digest


def test_built_package_describes_itself(tmp_path):
    greeting = tmp_path / "greeting.txt"
    greeting.write_text("hi")

    built = build(
        sample_models.ConfiguredModel(),
        artifacts={"greeting": greeting},
        model_config={"prefix": "x"},
    )

    assert built.digest == sha256_bytes(built.data)
    assert len(built.digest) == 64
    assert built.class_path == "tests.sample_models:ConfiguredModel"
    assert "class ConfiguredModel(ChatModel)" in built.source_code
    assert built.python_version == built.package_versions["python"]
    assert {"cloudpickle", "chatmodels"} <= set(built.package_versions)
    assert built.artifacts["greeting"]["size"] == 2
    assert built.manifest["model_config"] == {"prefix": "x"}
    assert built.manifest["input_example"] == DEFAULT_INPUT_EXAMPLE
    assert built.manifest["signature"] == chat_signature()
    with zipfile.ZipFile(io.BytesIO(built.data)) as archive:
        names = set(archive.namelist())
        manifest = json.loads(archive.read("manifest.json"))
    assert {"manifest.json", "model.pkl", "code/sample_models.py"} <= names
    assert "artifacts/greeting/greeting.txt" in names
    assert manifest == built.manifest


def test_load_context_runs_once_per_open(tmp_path):
    cls = load_target(f"{write_model(tmp_path / 'counting.py')}:Counting")
    built = build(cls())

    loaded = open_built(built, tmp_path / "work")

    assert loaded.model.loads == 1
    assert answer(loaded) == "V1 loads=1"
    assert answer(loaded) == "V1 loads=1"
    assert open_built(built, tmp_path / "work").model.loads == 1  # a second open, artifacts reused


def test_the_model_is_frozen_before_load_context(tmp_path):
    cls = load_target(f"{write_model(tmp_path / 'counting.py')}:Counting")
    model = cls()
    model.load_context(None)
    model.load_context(None)

    loaded = open_built(build(model), tmp_path / "work")

    assert loaded.model.loads == 3  # the state at build time travels; load_context adds one


def test_file_model_records_its_file_name_and_source(tmp_path):
    path = write_model(tmp_path / "counting.py")
    built = build(load_target(f"{path}:Counting")())

    assert built.class_path == "counting.py:Counting"
    assert built.source_code == path.read_text()
    assert built.manifest["source_file"] == "code/counting.py"


def test_load_context_that_raises_is_model_raised(tmp_path):
    built = build(sample_models.ConfiguredModel())  # no greeting artifact: load_context fails

    with pytest.raises(ModelRaised, match="load_context raised KeyError"):
        open_built(built, tmp_path / "work")


def test_bad_artifacts_and_config_are_refused(tmp_path):
    model = sample_models.TriggerModel()

    with pytest.raises(RegistrationError, match="does not exist"):
        build(model, artifacts={"weights": tmp_path / "missing.bin"})
    with pytest.raises(RegistrationError, match="artifact name"):
        build(model, artifacts={"../escape": tmp_path})
    with pytest.raises(RegistrationError, match="model_config is not JSON-serializable"):
        build(model, model_config={"when": object()})


def test_editing_and_deleting_the_source_file_does_not_change_the_package(tmp_path):
    author = tmp_path / "author"
    author.mkdir()
    source = write_model(author / "frozen_model.py", "v1")
    built = build(load_target(f"{source}:Counting")())

    write_model(source, "v2")  # the author edits the file (a new build would see the edit)...
    edited = build(load_target(f"{source}:Counting")())
    assert answer(open_built(edited, tmp_path / "edited")) == "V2 loads=1"
    source.unlink()  # ...then deletes it
    author.rmdir()

    assert answer(open_built(built, tmp_path / "work")) == "V1 loads=1"

    package = tmp_path / "package.zip"
    package.write_bytes(built.data)
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            OPEN_IN_FRESH_PROCESS,
            str(package),
            built.digest,
            str(tmp_path / "fresh"),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["content"] == "V1 loads=1"


def test_a_file_model_that_imports_a_sibling_survives_deleting_both(tmp_path):
    author = tmp_path / "author"
    author.mkdir()
    (author / "pkg_sibling_text.py").write_text("def word():\n    return 'sibling says hi'\n")
    (author / "pkg_uses_sibling.py").write_text(
        textwrap.dedent(
            """
            import pkg_sibling_text
            from chatmodels import ChatModel, ChatResponse

            class Sibling(ChatModel):
                def predict(self, context, messages, params):
                    message = {"role": "assistant", "content": pkg_sibling_text.word()}
                    return ChatResponse(choices=[{"message": message}])
            """
        )
    )
    built = build(load_target(f"{author / 'pkg_uses_sibling.py'}:Sibling")())
    for file in author.glob("*.py"):
        file.unlink()
    package = tmp_path / "package.zip"
    package.write_bytes(built.data)

    result = subprocess.run(
        [sys.executable, "-c", OPEN_IN_FRESH_PROCESS, str(package), built.digest, str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["content"] == "sibling says hi"


def test_a_package_target_keeps_the_code_of_its_package_modules(tmp_path, monkeypatch):
    package_dir = tmp_path / "src" / "frozen_author_pkg"
    package_dir.mkdir(parents=True)
    (package_dir / "__init__.py").write_text("")
    (package_dir / "words.py").write_text("def word():\n    return 'registered words'\n")
    (package_dir / "models.py").write_text(
        textwrap.dedent(
            """
            from chatmodels import ChatModel, ChatResponse
            from frozen_author_pkg import words

            class Model(ChatModel):
                def predict(self, context, messages, params):
                    message = {"role": "assistant", "content": words.word()}
                    return ChatResponse(choices=[{"message": message}])
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    built = build(load_target("frozen_author_pkg.models:Model")())
    (package_dir / "words.py").write_text("def word():\n    return 'edited afterwards'\n")
    package = tmp_path / "package.zip"
    package.write_bytes(built.data)

    # PYTHONPATH makes the edited package importable: the version must not pick it up.
    result = subprocess.run(
        [sys.executable, "-c", OPEN_IN_FRESH_PROCESS, str(package), built.digest, str(tmp_path)],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(tmp_path / "src")},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert built.class_path == "frozen_author_pkg.models:Model"
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["content"] == "registered words"


# ---------------------------------------------------------------------------------------------
# Integrity: nothing from a tampered package runs


class _CreatesMarker:
    """Unpickling this creates a file: what a planted pickle could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


def _replace_member(data: bytes, name: str, content: bytes, manifest_too: bool = False) -> bytes:
    source = zipfile.ZipFile(io.BytesIO(data))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as target:
        for item in source.namelist():
            payload = content if item == name else source.read(item)
            if item == "manifest.json" and manifest_too:
                manifest = json.loads(payload)
                manifest["members"][name] = sha256_bytes(content)
                payload = json.dumps(manifest).encode()
            target.writestr(item, payload)
    return buffer.getvalue()


@pytest.fixture
def built_package():
    return build(sample_models.TriggerModel())


def test_an_untouched_package_opens(built_package, tmp_path):
    assert answer(open_built(built_package, tmp_path)) == "Hello!"


def test_one_changed_byte_is_refused(built_package, tmp_path):
    data = bytearray(built_package.data)
    data[len(data) // 2] ^= 0x01

    with pytest.raises(PackageIntegrityError, match="digest mismatch"):
        open_package(bytes(data), expected_digest=built_package.digest, work_dir=tmp_path)


def test_a_swapped_pickle_is_refused_before_it_is_unpickled(built_package, tmp_path):
    marker = tmp_path / "pwned"
    evil = pickle.dumps(_CreatesMarker(marker))
    tampered = _replace_member(built_package.data, "model.pkl", evil, manifest_too=True)

    with pytest.raises(PackageIntegrityError, match="digest mismatch"):
        open_package(tampered, expected_digest=built_package.digest, work_dir=tmp_path)
    assert not marker.exists()

    # Even with a digest that matches the tampered bytes, the manifest catches an unlisted change.
    swapped_only = _replace_member(built_package.data, "model.pkl", evil)
    with pytest.raises(PackageIntegrityError, match=r"model\.pkl does not match its manifest"):
        open_package(swapped_only, expected_digest=sha256_bytes(swapped_only), work_dir=tmp_path)
    assert not marker.exists()

    pickle.loads(evil)  # the planted pickle is real: unpickling it does create the marker
    assert marker.exists()


def test_a_malformed_package_is_refused(tmp_path):
    garbage = b"not a zip file at all"

    with pytest.raises(PackageIntegrityError, match="malformed package"):
        open_package(garbage, expected_digest=sha256_bytes(garbage), work_dir=tmp_path)


def test_an_empty_expected_digest_is_refused(built_package, tmp_path):
    with pytest.raises(PackageIntegrityError):
        open_package(built_package.data, expected_digest="", work_dir=tmp_path)


# ---------------------------------------------------------------------------------------------
# Save-time validation


def loaded_sample(cls, tmp_path):
    return open_built(build(cls()), tmp_path)


def test_validate_model_accepts_a_good_model(tmp_path):
    response = validate_model(
        loaded_sample(sample_models.TriggerModel, tmp_path), DEFAULT_INPUT_EXAMPLE
    )

    assert isinstance(response, ChatResponse)
    assert response.choices[0].message.content == "Hello!"


def test_validate_model_uses_the_given_input_example(tmp_path):
    example = {"messages": [{"role": "user", "content": "custom example"}]}

    response = validate_model(loaded_sample(sample_models.TriggerModel, tmp_path), example)

    assert response.choices[0].message.content == "custom example"


def test_a_dict_output_is_invalid_and_the_message_shows_it(tmp_path):
    loaded = loaded_sample(sample_models.DictOutputModel, tmp_path)

    with pytest.raises(InvalidModelOutput) as caught:
        validate_model(loaded, DEFAULT_INPUT_EXAMPLE)

    message = str(caught.value)
    assert "predict returned dict, not ChatResponse" in message
    assert "'choices'" in message


def test_a_string_output_is_invalid_and_the_message_shows_it(tmp_path):
    loaded = loaded_sample(sample_models.StringOutputModel, tmp_path)

    with pytest.raises(InvalidModelOutput, match="predict returned str, not ChatResponse: 'hello'"):
        validate_model(loaded, DEFAULT_INPUT_EXAMPLE)


def test_a_raising_model_is_model_raised_naming_the_exception(tmp_path):
    loaded = loaded_sample(sample_models.RaisingModel, tmp_path)

    with pytest.raises(ModelRaised, match="predict raised ValueError: model exploded"):
        validate_model(loaded, DEFAULT_INPUT_EXAMPLE)


def test_a_corrupted_nested_output_names_the_field_path(tmp_path):
    loaded = loaded_sample(sample_models.BadNestedOutputModel, tmp_path)

    with pytest.raises(InvalidModelOutput) as caught:
        validate_model(loaded, DEFAULT_INPUT_EXAMPLE)

    assert "choices[0].message.content" in str(caught.value)
    assert "int 42" in str(caught.value)


def test_check_response_and_check_chunk():
    response = ChatResponse(choices=[{"message": {"role": "assistant", "content": "ok"}}])
    chunk = ChatChunk(choices=[{"delta": {"content": "o"}}])

    assert check_response(response) is response
    assert check_chunk(chunk) is chunk
    with pytest.raises(InvalidModelOutput, match="predict_stream yielded ChatResponse"):
        check_chunk(response)
    with pytest.raises(InvalidModelOutput, match="predict returned ChatChunk"):
        check_response(chunk)
    chunk.choices[0].delta.content = ["not", "a", "string"]
    with pytest.raises(InvalidModelOutput, match=r"choices\[0\]\.delta\.content"):
        check_chunk(chunk)


def test_streaming_support_is_detected(tmp_path):
    assert loaded_sample(sample_models.StreamingModel, tmp_path / "a").streams is True
    assert loaded_sample(sample_models.TriggerModel, tmp_path / "b").streams is False


# ---------------------------------------------------------------------------------------------
# The author's file and lines in tracebacks

FLAKY_MODEL = """\
from chatmodels import ChatModel, ChatResponse


class Flaky(ChatModel):
    def predict(self, context, messages, params):
        if messages[-1].content == "fail":
            raise RuntimeError("upstream said no")
        return ChatResponse(choices=[{"message": {"role": "assistant", "content": "ok"}}])
"""


@pytest.mark.django_db
def test_a_served_versions_traceback_names_the_authors_file_and_registered_lines(
    tmp_path, client, caplog
):
    source = tmp_path / "flaky.py"
    source.write_text(FLAKY_MODEL)
    register(name="flaky", model=f"{source}:Flaky")
    _, raw_key = make_key()
    # As on a host where the file is gone or changed: the version serves, and shows, what was
    # registered. (A new process has none of this one's cached lines.)
    source.write_text("# rewritten after registration\n" * 10)
    linecache.clearcache()
    logger = logging.getLogger("chatmodels")
    logger.addHandler(caplog.handler)
    try:
        response = client.post(
            "/v1/chat/completions",
            {"model": "flaky", "messages": [{"role": "user", "content": "fail"}]},
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {raw_key}",
        )
    finally:
        logger.removeHandler(caplog.handler)

    assert response.status_code == 500
    assert f'File "{source.resolve()}", line 7, in predict' in caplog.text
    assert '    raise RuntimeError("upstream said no")' in caplog.text
    assert "<dynamic-code>" not in caplog.text


def test_two_versions_of_one_file_in_a_process_show_no_source_line_rather_than_a_wrong_one(
    tmp_path,
):
    source = tmp_path / "flaky.py"
    source.write_text(FLAKY_MODEL)
    first = open_built(build(load_target(f"{source}:Flaky")()), tmp_path / "cache")
    source.write_text("\n\n" + FLAKY_MODEL)  # the same code two lines lower
    second = open_built(build(load_target(f"{source}:Flaky")()), tmp_path / "cache")
    failing = {"messages": [{"role": "user", "content": "fail"}]}

    for loaded, line in [(first, 7), (second, 9)]:
        with pytest.raises(ModelRaised) as raised:
            validate_model(loaded, failing)
        assert str(raised.value) == (
            f"predict raised RuntimeError: upstream said no at flaky.py:{line} in predict"
        )
