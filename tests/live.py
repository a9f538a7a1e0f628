"""Real processes for the multi-process tests: a deployment's environment, its own database,
the production server (`scripts/server`), `manage.py` and moto's S3 server, all on 127.0.0.1,
every wait bounded in count and time.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 60.0  # seconds for a server to answer its first request
POSTGRES_SCHEMES = ("postgres://", "postgresql://", "pgsql://")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# HTTP


@dataclass
class Reply:
    status: int
    body: Any
    headers: Any

    def content(self) -> str:
        """The first choice's message content of a chat.completion."""
        assert self.status == 200, (self.status, self.body)
        return self.body["choices"][0]["message"]["content"]


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # a redirect is an answer to look at, not to follow


# Loopback only: no proxy from the environment, redirects returned as they are.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirects())


def http(
    method: str,
    url: str,
    *,
    body: Any = None,
    key: str | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30,
) -> Reply:
    """One HTTP request with urllib; JSON bodies are decoded, anything else is returned as bytes."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            status, raw, reply_headers = response.status, response.read(), response.headers
    except urllib.error.HTTPError as error:
        status, raw, reply_headers = error.code, error.read(), error.headers
    if "json" in (reply_headers.get("Content-Type") or ""):
        return Reply(status, json.loads(raw), reply_headers)
    return Reply(status, raw, reply_headers)


def chat_body(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


# ---------------------------------------------------------------------------------------------
# Processes


@dataclass
class Process:
    popen: subprocess.Popen
    log_path: Path
    name: str

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=15)
        # Whatever it left behind goes too: a server's worker respawned while the server was
        # stopping outlives it (seen after tests that kill workers).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)


def start_process(args: list[str], *, env: dict[str, str], log_path: Path, name: str) -> Process:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        popen = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, so that stop() can end all of it
        )
    return Process(popen=popen, log_path=log_path, name=name)


T = TypeVar("T")


def poll(read: Callable[[], T], *, until: Callable[[T], bool], timeout: float = 10) -> T:
    """`read()` every 0.2 s until `until` holds for what it read, or `timeout` seconds have
    passed; the last value read either way (the caller asserts on it)."""
    deadline = time.monotonic() + timeout
    while not until(value := read()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return value


def wait_until_answers(process: Process, url: str, *, timeout: float = START_TIMEOUT) -> bool:
    """Poll `url` until it gives any HTTP answer; False if the process died or time ran out."""
    deadline = time.monotonic() + timeout
    for _attempt in range(int(timeout * 10)):
        if process.popen.poll() is not None or time.monotonic() > deadline:
            return False
        try:
            _OPENER.open(url, timeout=2).close()
            return True
        except urllib.error.HTTPError:
            return True
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    return False


def start_server(command, *, log_path: Path, name: str, probe: str = "/") -> tuple[Process, str]:
    """Start `command(port) -> (args, env)` on a free port (another one if it loses a bind race)."""
    for _attempt in range(3):
        port = free_port()
        args, env = command(port)
        process = start_process(args, env=env, log_path=log_path, name=name)
        base_url = f"http://127.0.0.1:{port}"
        if wait_until_answers(process, base_url + probe):
            return process, base_url
        process.stop()
        if "already in use" not in process.log():
            break
    raise AssertionError(f"{name} did not start; its log:\n{process.log()[-4000:]}")


@contextmanager
def moto_s3(directory: Path) -> Iterator[S3]:
    """moto's standalone S3-compatible server on loopback, with one empty bucket."""
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    process, endpoint = start_server(
        lambda port: (
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            env,
        ),
        log_path=directory / "moto.log",
        name="moto S3 server",
    )
    try:
        s3 = S3(endpoint=endpoint, bucket=f"chatmodels-{uuid.uuid4().hex[:8]}")
        s3.client().create_bucket(Bucket=s3.bucket)
        yield s3
    finally:
        process.stop()


@dataclass
class S3:
    endpoint: str
    bucket: str
    location: str = "chatmodels"

    def env(self) -> dict[str, str]:
        return {
            "AWS_STORAGE_BUCKET_NAME": self.bucket,
            "AWS_S3_ENDPOINT_URL": self.endpoint,
            "AWS_S3_REGION_NAME": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_LOCATION": self.location,
        }

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def keys(self) -> list[str]:
        listing = self.client().list_objects_v2(Bucket=self.bucket)
        return sorted(item["Key"] for item in listing.get("Contents", []))

    def read(self, key: str) -> bytes:
        return self.client().get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def write(self, key: str, data: bytes) -> None:
        self.client().put_object(Bucket=self.bucket, Key=key, Body=data)


# ---------------------------------------------------------------------------------------------
# A deployment: one database and one package store, shared by any number of hosts


@contextmanager
def isolated_database(directory: Path) -> Iterator[str]:
    """A fresh, empty database URL, on the test run's PostgreSQL if it has one, else SQLite.

    On PostgreSQL a new database is created next to the test database and dropped afterwards
    (closing whatever connections servers left open).
    """
    base_url = os.environ.get("DATABASE_URL", "")
    if not base_url.startswith(POSTGRES_SCHEMES):
        yield f"sqlite:///{directory / 'shared.sqlite3'}"
        return
    import psycopg

    parts = urlsplit(base_url)
    maintenance_url = urlunsplit(parts._replace(scheme="postgresql", path="/postgres"))
    name = f"chatmodels_live_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(maintenance_url, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(maintenance_url, autocommit=True) as connection:
            for attempt in range(20):
                try:
                    connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                    break
                except psycopg.errors.InsufficientPrivilege:
                    # An autovacuum worker on the new database, which only a superuser may
                    # end: it is done within moments (seen once in CI).
                    if attempt == 19:
                        raise
                    time.sleep(0.5)


@dataclass
class Deployment:
    """What every host of one installation shares: database, secret and package storage."""

    directory: Path
    database_url: str
    s3: S3 | None = None
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(50))
    processes: list[Process] = field(default_factory=list)

    def env(self, host: str, **extra: str) -> dict[str, str]:
        """The environment of a process on `host`: production settings, its own local folders."""
        inherited = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("AWS_", "GRANIAN_", "CHATMODELS_", "DJANGO_", "PYTEST_"))
            and key not in ("HOST", "PORT", "WORKERS", "MAX_IN_FLIGHT")
        }
        host_dir = self.directory / host
        # Without S3 the hosts share one package folder (as they would over NFS); with S3 each
        # host's folder stays unused, which the storage tests check.
        packages = host_dir / "packages" if self.s3 else self.directory / "shared-packages"
        env = {
            **inherited,
            "DJANGO_SETTINGS_MODULE": "project.settings",
            "ENV_FILE": "",  # no developer's .env: only what is set here
            "SECRET_KEY": self.secret_key,
            "DEBUG": "false",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SECURE_SSL_REDIRECT": "false",
            "DATABASE_URL": self.database_url,
            "CHATMODELS_PACKAGE_DIR": str(packages),
            "CHATMODELS_CACHE_DIR": str(host_dir / "cache"),
            "CHATMODELS_THROTTLE_RATE": "",
            "LOG_FORMAT": "json",
            "AWS_STORAGE_BUCKET_NAME": "",
            "STATIC_ROOT": str(self.directory / "static"),
            # What test models record (tests/server_models.py) is written here, from their
            # workers: the one folder of the installation they may write.
            "CHATMODELS_WORKER_PATHS": str(self.directory / "records"),
        }
        if self.s3 is not None:
            env.update(self.s3.env())
        env.update(extra)
        return env

    def manage(
        self, *args: str, host: str = "admin", check: bool = True, timeout: float = 180
    ) -> subprocess.CompletedProcess:
        """`python manage.py ARGS` as a process on `host`."""
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env(host),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"manage.py {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
            )
        return result

    def create_api_key(self, name: str = "live", *options: str) -> str:
        """A new key's raw value; `options` as `create_api_key` takes them (`--rpm`, `20` …)."""
        return self.manage("create_api_key", name, *options).stdout.strip().splitlines()[-1]

    def start_server(
        self, host: str, *, workers: int = 2, max_in_flight: int = 8, **extra: str
    ) -> str:
        """The production server (`scripts/server`) on a free loopback port; its base URL."""
        process, base_url = start_server(
            lambda port: (
                ["bash", "scripts/server"],
                self.env(
                    host,
                    PYTHON=sys.executable,
                    HOST="127.0.0.1",
                    PORT=str(port),
                    WORKERS=str(workers),
                    MAX_IN_FLIGHT=str(max_in_flight),
                    # Each server its own metrics folder (scripts/server empties it at start).
                    PROMETHEUS_MULTIPROC_DIR=str(self.directory / host / f"metrics-{port}"),
                    **extra,
                ),
            ),
            log_path=self.directory / host / "server.log",
            name=f"server on {host}",
            probe="/health",
        )
        self.processes.append(process)
        return base_url

    def stop(self) -> None:
        for process in self.processes:
            process.stop()
        self.processes.clear()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.log()[-3000:]}" for p in self.processes)


@contextmanager
def deployment(directory: Path, *, s3: S3 | None = None) -> Iterator[Deployment]:
    """A migrated, empty installation; every server it starts is stopped on the way out."""
    with isolated_database(directory) as database_url:
        installation = Deployment(directory=directory, database_url=database_url, s3=s3)
        try:
            installation.manage("migrate", "--noinput", "-v", "0")
            yield installation
        finally:
            installation.stop()
