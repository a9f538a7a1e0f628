"""A version's package: load a model target, freeze it with its code and artifacts, open it back.

A package is a zip of `manifest.json`, `model.pkl` (cloudpickle, the author's module pickled by
value), `code/<file>` (the source, for people) and `artifacts/<name>/…`. Its sha256 is checked
before anything in it is read, unpickled or run. See docs/packaging.md for the security model.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import io
import json
import linecache
import logging
import os
import platform
import re
import shutil
import stat
import sys
import sysconfig
import tempfile
import threading
import traceback
import types
import zipfile
from collections import ChainMap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cloudpickle

from chatmodels.base import ChatModel, ModelContext
from chatmodels.exceptions import (
    ChatDataError,
    InvalidModelOutput,
    InvalidTarget,
    ModelRaised,
    PackageIntegrityError,
    RegistrationError,
    short_repr,
)
from chatmodels.serving import eventloop
from chatmodels.types import ChatChunk, ChatRequest, ChatResponse

FORMAT_VERSION = 1
ARTIFACT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}\Z")
# Distributions whose versions matter to load a package: recorded in every manifest.
RECORDED_DISTRIBUTIONS = ("cloudpickle",)
_PICKLE_LOCK = threading.Lock()  # register_pickle_by_value is process-global state

logger = logging.getLogger(__name__)


@dataclass
class BuiltPackage:
    data: bytes
    digest: str
    manifest: dict[str, Any]
    class_path: str
    source_code: str
    python_version: str
    package_versions: dict[str, str]
    artifacts: dict[str, dict[str, Any]]


@dataclass
class LoadedModel:
    model: ChatModel
    context: ModelContext
    manifest: dict[str, Any]
    digest: str
    streams: bool = field(init=False)
    # Coroutine functions and async generators run on the process's event loop.
    predict_is_async: bool = field(init=False)
    stream_is_async: bool = field(init=False)
    # `predict(messages, params)` / `predict_stream(messages, params)`: the model's methods with
    # the context bound when they take one (MLflow >= 2.20 lets authors leave it out).
    predict: Callable[[list, Any], Any] = field(init=False)
    predict_stream: Callable[[list, Any], Any] | None = field(init=False)

    def __post_init__(self) -> None:
        model_class = type(self.model)
        self.streams = model_class.supports_streaming()
        self.predict_is_async = inspect.iscoroutinefunction(model_class.predict)
        self.stream_is_async = inspect.isasyncgenfunction(model_class.predict_stream)
        self.predict = _with_context(self.model.predict, self.context)
        self.predict_stream = (
            _with_context(self.model.predict_stream, self.context) if self.streams else None
        )


def takes_context(method: Callable) -> bool:
    """Whether a bound `predict`/`predict_stream` takes `context` first.

    MLflow's rule: a parameter named `context`, or three of them; `(messages, params)` means
    no context. `*args` is given the context too.
    """
    parameters = inspect.signature(method).parameters
    if "context" in parameters:
        return True
    positional = [
        p
        for p in parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
    ]
    return len(positional) != 2 or any(p.kind is p.VAR_POSITIONAL for p in positional)


def check_method_signatures(model: ChatModel) -> None:
    """`predict` (and `predict_stream`, if the model has one) must take what the server passes:
    `(context, messages, params)`, or `(messages, params)`; else RegistrationError showing the
    expected form, before anything runs."""
    methods = ["predict"] + (["predict_stream"] if type(model).supports_streaming() else [])
    for name in methods:
        method = getattr(model, name)
        try:
            signature = inspect.signature(method)
        except (TypeError, ValueError):
            continue  # a builtin or C callable: nothing to read, the call will tell
        given = (None, None, None) if takes_context(method) else (None, None)
        try:
            signature.bind(*given)
        except TypeError:
            raise RegistrationError(
                f"{type(model).__name__}.{name}{signature} cannot be called as the server calls"
                f" it; define `def {name}(self, context, messages, params)` (or, without the"
                f" context, `def {name}(self, messages, params)`)"
            ) from None


def _with_context(method: Callable, context: ModelContext) -> Callable:
    return functools.partial(method, context) if takes_context(method) else method


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------
# Targets


def load_target(target: str) -> type[ChatModel]:
    """Import `package.module:Class` or `path/to/file.py:Class` and check it is a ChatModel."""
    module_part, sep, class_name = target.rpartition(":")
    if not sep or not module_part or not class_name:
        raise InvalidTarget(
            f"target {target!r} must look like 'package.module:Class' or 'path/file.py:Class'"
        )
    if module_part.endswith(".py") or os.sep in module_part or "/" in module_part:
        module = _import_file(Path(module_part))
    else:
        module = _import_module(module_part)
    cls = getattr(module, class_name, None)
    if cls is None:
        raise InvalidTarget(f"class {class_name!r} not found in {module_part}")
    if not inspect.isclass(cls):
        raise InvalidTarget(f"{target} is a {type(cls).__name__}, not a class")
    if not issubclass(cls, ChatModel):
        raise InvalidTarget(f"{target} is not a subclass of chatmodels.ChatModel")
    if inspect.isabstract(cls):
        raise InvalidTarget(f"{target} does not implement predict()")
    return cls


def _import_module(name: str):
    # As with `python -m`, a module in the caller's folder is found, wherever manage.py lives.
    folder = os.getcwd()
    added = folder not in sys.path and "" not in sys.path
    if added:
        sys.path.insert(0, folder)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name and name.startswith(error.name):
            raise InvalidTarget(
                f"module {name!r} not found in the current folder ({folder}) or the installed"
                f" packages; for a file, give its path: path/to/{name.split('.')[-1]}.py:Class"
            ) from None
        raise InvalidTarget(f"importing {name} raised {describe_error(error)}") from error
    except Exception as error:
        raise InvalidTarget(f"importing {name} raised {describe_error(error)}") from error
    finally:
        if added:
            sys.path.remove(folder)


def _import_file(path: Path):
    path = path.expanduser().resolve()
    if not path.is_file():
        raise InvalidTarget(f"file {path} not found")
    # A stable name per file, so cloudpickle can pickle the module by value.
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:10]
    module_name = f"chatmodels_user_{re.sub(r'[^0-9A-Za-z_]', '_', path.stem)}_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise InvalidTarget(f"{path} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    sys.path.insert(0, str(path.parent))  # sibling imports of the author's file
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[module_name]
        raise InvalidTarget(f"importing {path.name} raised {describe_error(error)}") from error
    finally:
        sys.path.remove(str(path.parent))
    return module


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def describe_error(error: BaseException) -> str:
    """The error on one line, with where the author's code raised it, e.g.
    "ZeroDivisionError: division by zero at my_model.py:12 in predict: `return 1/0`"."""
    frame = _author_frame(error)
    if frame is None:
        return _one_line(error)
    where = f"{os.path.basename(frame.filename)}:{frame.lineno} in {frame.name}"
    line = (frame.line or "").strip()
    return f"{_one_line(error)} at {where}" + (f": `{line}`" if line else "")


def _author_frame(error: BaseException) -> traceback.FrameSummary | None:
    """The innermost frame of the author's own code in the error's traceback, if any."""
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        if not frame.filename.startswith("<") and not os.path.abspath(frame.filename).startswith(
            _LIBRARY_FOLDERS
        ):
            return frame
    return None


# Frames from these folders are not the author's: chatmodels itself, the standard library and
# installed packages.
_LIBRARY_FOLDERS = tuple(
    os.path.join(os.path.abspath(folder), "")
    for folder in {
        os.path.dirname(os.path.abspath(__file__)),
        *(sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")),
    }
)


# ---------------------------------------------------------------------------------------------
# Building


def build_package(
    model: ChatModel,
    *,
    artifacts: dict[str, str | Path] | None = None,
    model_config: dict[str, Any] | None = None,
    input_example: dict[str, Any],
    signature: dict[str, Any],
) -> BuiltPackage:
    """Freeze `model` (as it is now, before `load_context`) with its code and artifacts."""
    cls = type(model)
    module = sys.modules.get(cls.__module__)
    source_name, source_code = _source_of(module)
    # A file target's module has a generated name: people know it by its file name.
    module_label = source_name if cls.__module__.startswith("chatmodels_user_") else cls.__module__
    class_path = f"{module_label}:{cls.__qualname__}"
    model_config = dict(model_config or {})
    try:
        json.dumps(model_config)
    except (TypeError, ValueError) as error:
        raise RegistrationError(f"model_config is not JSON-serializable: {error}") from None

    members: dict[str, bytes] = {"model.pkl": _pickle_model(model, module)}
    if source_code:
        members[f"code/{source_name}"] = source_code.encode()
    artifact_entries: dict[str, dict[str, Any]] = {}
    for name, source in sorted((artifacts or {}).items()):
        artifact_entries[name] = _add_artifact(members, name, Path(source))

    package_versions = {"python": platform.python_version(), **_distribution_versions()}
    manifest = {
        "format_version": FORMAT_VERSION,
        "class_path": class_path,
        "python_version": platform.python_version(),
        "package_versions": package_versions,
        "model_config": model_config,
        "input_example": input_example,
        "signature": signature,
        "artifacts": artifact_entries,
        "source_file": f"code/{source_name}" if source_code else None,
        # The file the code was compiled from: the name its tracebacks show (see _Pickler).
        "source_path": getattr(module, "__file__", None) if source_code else None,
        "members": {name: sha256_bytes(data) for name, data in sorted(members.items())},
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", json.dumps(manifest, indent=2, sort_keys=True))
        for name, data in sorted(members.items()):
            archive.writestr(name, data)
    data = buffer.getvalue()
    return BuiltPackage(
        data=data,
        digest=sha256_bytes(data),
        manifest=manifest,
        class_path=class_path,
        source_code=source_code,
        python_version=platform.python_version(),
        package_versions=package_versions,
        artifacts=artifact_entries,
    )


def _pickle_model(model: ChatModel, module) -> bytes:
    # The author's module goes in by value, so the version no longer needs the source file.
    by_value = _by_value_modules(module)
    with _PICKLE_LOCK:
        for item in by_value:
            cloudpickle.register_pickle_by_value(item)
        try:
            with io.BytesIO() as buffer:
                _Pickler(buffer, protocol=cloudpickle.DEFAULT_PROTOCOL).dump(model)
                return buffer.getvalue()
        except Exception as error:
            raise RegistrationError(
                f"the model cannot be serialized: {_one_line(error)}{_unpicklable_attribute(model)}"
            ) from None
        finally:
            for item in by_value:
                cloudpickle.unregister_pickle_by_value(item)


def _unpicklable_attribute(model: ChatModel) -> str:
    """Which attribute of the model could not be pickled, and what to do, as the end of an
    error message ("" when no single attribute is to blame)."""
    for name, value in vars(model).items():
        try:
            cloudpickle.dumps(value)
        except Exception:
            return (
                f"; its attribute self.{name} ({type(value).__module__}.{type(value).__qualname__})"
                " cannot be saved with the version: create it in"
                " `load_context(self, context)`, which runs when the model is loaded, instead of"
                " in `__init__`"
            )
    return ""


_CLOUDPICKLE_FILENAME = "<dynamic-code>"  # what cloudpickle writes as every code object's file


def _code_keeping_its_file(code: types.CodeType):
    """cloudpickle's reduction of a code object, with the file name it was compiled from."""
    constructor, args = cloudpickle.Pickler.dispatch_table[types.CodeType](code)
    if args.count(_CLOUDPICKLE_FILENAME) == 1:
        at = args.index(_CLOUDPICKLE_FILENAME)
        args = (*args[:at], code.co_filename, *args[at + 1 :])
    return constructor, args


class _Pickler(cloudpickle.Pickler):
    """cloudpickle, except that the author's code keeps its file name, so that tracebacks from a
    served version name the author's file and line, not `File "<dynamic-code>"`."""

    dispatch_table = ChainMap(
        {types.CodeType: _code_keeping_its_file}, cloudpickle.Pickler.dispatch_table
    )


def _by_value_modules(module) -> list:
    """The author's module, plus the author's modules next to it: its folder, or its package.

    A file's siblings were importable only while its folder was on `sys.path`, and a package's
    other modules may be edited or gone later: so they travel by value too, and a version keeps
    serving exactly the code that was registered. Only modules the model uses end up pickled.
    """
    if module is None or not _is_user_module(module):
        return []
    path = getattr(module, "__file__", None)
    if not path:
        return [module]
    folder = os.path.dirname(os.path.abspath(path))
    name = module.__name__
    if not (name == "__main__" or name.startswith("chatmodels_user_")):
        # `a.b.c` lives in <root>/a/b/c.py (or c/__init__.py): its top package is <root>/a.
        is_package = hasattr(module, "__path__")
        for _ in range(name.count(".") - (0 if is_package else 1)):
            folder = os.path.dirname(folder)
    folder += os.sep
    modules = [module]
    for key, other in list(sys.modules.items()):
        other_path = getattr(other, "__file__", None)
        if (
            other is not module
            and key == getattr(other, "__name__", None)
            and other_path
            and os.path.abspath(other_path).startswith(folder)
            and _is_user_module(other)
        ):
            modules.append(other)
    return modules


def _is_user_module(module) -> bool:
    """Author code is pickled by value; installed libraries and chatmodels itself by reference."""
    name = module.__name__
    if name == "__main__" or name.startswith("chatmodels_user_"):
        return True
    if name.split(".")[0] == "chatmodels":
        return False
    path = getattr(module, "__file__", None) or ""
    return "site-packages" not in path and "dist-packages" not in path and bool(path)


def _source_of(module) -> tuple[str, str]:
    path = getattr(module, "__file__", None)
    if not path:
        return "model.py", ""
    try:
        return Path(path).name, Path(path).read_text(encoding="utf-8")
    except OSError:
        return Path(path).name, ""


def _add_artifact(members: dict[str, bytes], name: str, source: Path) -> dict[str, Any]:
    if not ARTIFACT_NAME.match(name):
        raise RegistrationError(
            f"artifact name {name!r} must be letters, digits, '_', '.', '-', starting with a letter"
        )
    source = source.expanduser()
    if not source.exists():
        raise RegistrationError(f"artifact {name!r}: {source} does not exist")
    files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    size = 0
    for file in files:
        relative = file.name if source.is_file() else file.relative_to(source).as_posix()
        try:
            data = file.read_bytes()
        except OSError as error:
            raise RegistrationError(f"artifact {name!r}: cannot read {file}: {error}") from None
        members[f"artifacts/{name}/{relative}"] = data
        digest.update(relative.encode() + b"\0" + data)
        size += len(data)
    path = f"artifacts/{name}/{source.name}" if source.is_file() else f"artifacts/{name}"
    return {"path": path, "size": size, "sha256": digest.hexdigest(), "files": len(files)}


def _distribution_versions() -> dict[str, str]:
    versions = {}
    for name in RECORDED_DISTRIBUTIONS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    from chatmodels import __version__

    versions["chatmodels"] = __version__
    return versions


# ---------------------------------------------------------------------------------------------
# Opening


def open_package(data: bytes, *, expected_digest: str, work_dir: Path | str) -> LoadedModel:
    """Check, unpack and load a package. Nothing in it is read before its digest matches."""
    actual = sha256_bytes(data)
    if actual != expected_digest:
        raise PackageIntegrityError(
            f"package digest mismatch: expected sha256 {expected_digest}, got {actual}; refused"
        )
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        manifest = json.loads(archive.read("manifest.json"))
        for name, member_digest in manifest["members"].items():
            if sha256_bytes(archive.read(name)) != member_digest:
                raise PackageIntegrityError(f"package member {name} does not match its manifest")
        pickled = archive.read("model.pkl")
    except PackageIntegrityError:
        raise
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError) as error:
        raise PackageIntegrityError(f"malformed package: {_one_line(error)}") from None

    _remember_source(archive, manifest)
    artifact_root = _unpack_artifacts(archive, manifest, Path(work_dir), actual)
    context = ModelContext(
        artifacts={
            name: str(artifact_root / entry["path"].removeprefix("artifacts/"))
            for name, entry in manifest.get("artifacts", {}).items()
        },
        model_config=dict(manifest.get("model_config") or {}),
    )
    try:
        model = cloudpickle.loads(pickled)
    except Exception as error:
        raise ModelRaised(f"unpickling the model raised {describe_error(error)}") from error
    try:
        eventloop.resolve(model.load_context(context))
    except Exception as error:
        raise ModelRaised(f"load_context raised {describe_error(error)}") from error
    return LoadedModel(model=model, context=context, manifest=manifest, digest=actual)


# The source registered for each file path in this process; None once two differ.
_REMEMBERED_SOURCES: dict[str, str | None] = {}


def _remember_source(archive: zipfile.ZipFile, manifest: dict) -> None:
    """Give tracebacks the registered source lines of the author's file, even on a host where
    that file does not exist or has changed since (linecache keeps entries without an mtime)."""
    path, member = manifest.get("source_path"), manifest.get("source_file")
    if not path or not member:
        return  # registered before source paths were recorded
    source = archive.read(member).decode("utf-8", errors="replace")
    if _REMEMBERED_SOURCES.setdefault(path, source) != source:
        # Two versions of one file in this process: show no source line rather than a wrong one.
        _REMEMBERED_SOURCES[path] = None
        source = ""
    linecache.cache[path] = (len(source), None, source.splitlines(keepends=True), path)


def _unpack_artifacts(
    archive: zipfile.ZipFile, manifest: dict, work_dir: Path, digest: str
) -> Path:
    """The artifacts as files under `work_dir/<digest>/artifacts`, unpacked once per digest.

    The folder is reused only while it holds exactly the package's files, each matching its
    sha256 in the (digest-checked) manifest: a file planted, changed or removed there is never
    served; the folder is set aside and unpacked again. Concurrent processes race to an atomic
    rename, and all reuse the winner's folder.
    """
    target = work_dir / digest / "artifacts"
    expected = {
        name.removeprefix("artifacts/"): member_digest
        for name, member_digest in manifest["members"].items()
        if name.startswith("artifacts/")
    }
    if not expected:
        return target
    for _attempt in range(3):
        if os.path.lexists(target):
            problem = _artifact_cache_problem(target, expected)
            if problem is None:
                return target
            logger.warning(
                "artifact cache %s does not match its package (%s): unpacking again",
                target,
                problem,
            )
            _set_aside(target, work_dir)
        if _extract_artifacts(archive, list(expected), work_dir, target, digest):
            return target  # our own fresh copy from the checked package
    raise PackageIntegrityError(f"the artifact cache {target} keeps changing while it is checked")


def _extract_artifacts(
    archive: zipfile.ZipFile, names: list[str], work_dir: Path, target: Path, digest: str
) -> bool:
    """Unpack into a staging folder and rename it to `target`; False if another process's
    folder got there first (the caller checks that one)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{digest[:12]}-", dir=work_dir))
    try:
        for relative_name in names:
            relative = Path(relative_name)
            if ".." in relative.parts or relative.is_absolute():
                raise PackageIntegrityError(
                    f"package member artifacts/{relative_name} escapes its folder"
                )
            destination = staging / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes(archive.read(f"artifacts/{relative_name}"))
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(staging, target)
        except OSError:
            if not os.path.lexists(target):  # someone else won the race only if it now exists
                raise
            return False
        return True
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _artifact_cache_problem(target: Path, expected: dict[str, str]) -> str | None:
    """What differs between the unpacked folder and the package's artifacts, or None."""
    if target.parent.is_symlink() or target.is_symlink() or not target.is_dir():
        return "not a plain folder"
    found: set[str] = set()
    try:
        for folder, folders, files in os.walk(target):
            for name in folders:
                if os.path.islink(os.path.join(folder, name)):
                    return f"a symlink {name!r}"
            for name in files:
                path = os.path.join(folder, name)
                relative = Path(path).relative_to(target).as_posix()
                if relative not in expected:
                    return f"an unexpected file {relative!r}"
                if not stat.S_ISREG(os.lstat(path).st_mode):
                    return f"{relative!r} is not a regular file"
                if _file_sha256(path) != expected[relative]:
                    return f"{relative!r} was changed"
                found.add(relative)
    except OSError as error:  # changed while we looked: e.g. set aside by another process
        return f"unreadable ({type(error).__name__})"
    missing = sorted(set(expected) - found)
    return f"{missing[0]!r} is missing" if missing else None


def _file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _set_aside(target: Path, work_dir: Path) -> None:
    """Move a bad folder out of the way (atomically: no process sees it half deleted), then
    delete it. Another process may have moved it already."""
    aside = work_dir / f".discarded-{target.parent.name[:12]}-{os.urandom(6).hex()}"
    try:
        os.rename(target, aside)
    except FileNotFoundError:
        return
    if aside.is_symlink() or not aside.is_dir():
        aside.unlink(missing_ok=True)
    else:
        shutil.rmtree(aside, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Output checks


_HOW_TO_ANSWER: dict[type, str] = {
    dict: "; wrap it: `return ChatResponse.from_dict(answer)` (the OpenAI chat.completion form)",
    str: '; wrap it: `return ChatResponse(choices=[{"message": {"role": "assistant",'
    ' "content": text}}])`',
}


def check_response(value: Any, *, source: str = "predict") -> ChatResponse:
    """`value` must be a valid ChatResponse; else InvalidModelOutput saying what came back."""
    if not isinstance(value, ChatResponse):
        raise InvalidModelOutput(
            f"{source} returned {type(value).__name__}, not ChatResponse: {short_repr(value, 200)}"
            + _HOW_TO_ANSWER.get(type(value), "")
        )
    try:
        value.validate()
    except ChatDataError as error:
        raise InvalidModelOutput(f"{source} returned an invalid ChatResponse: {error}") from None
    except RecursionError:
        raise InvalidModelOutput(f"{source} returned a ChatResponse nested too deeply") from None
    return value


def check_chunk(value: Any, *, source: str = "predict_stream") -> ChatChunk:
    """`value` must be a valid ChatChunk; else InvalidModelOutput saying what came back."""
    if not isinstance(value, ChatChunk):
        raise InvalidModelOutput(
            f"{source} yielded {type(value).__name__}, not ChatChunk: {short_repr(value, 200)}"
        )
    try:
        value.validate()
    except ChatDataError as error:
        raise InvalidModelOutput(f"{source} yielded an invalid ChatChunk: {error}") from None
    except RecursionError:
        raise InvalidModelOutput(f"{source} yielded a ChatChunk nested too deeply") from None
    return value


def validate_model(loaded: LoadedModel, input_example: dict[str, Any]) -> ChatResponse:
    """Run `predict` once on the input example and check what it returns."""
    messages, params = ChatRequest.from_dict(input_example).split()
    try:
        value = eventloop.resolve(loaded.predict(messages, params))
    except Exception as error:
        raise ModelRaised(f"predict raised {describe_error(error)}") from error
    return check_response(value)
