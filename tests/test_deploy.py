"""Production settings as an operator runs them: `check --deploy` clean with DEBUG off, the admin's
static files served by whitenoise under the production server, one JSON log line per request.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import stat
import string
import subprocess
import sys
import sysconfig
import urllib.parse
import urllib.request
import venv
from http.cookiejar import CookieJar
from pathlib import Path

import pytest

from tests.live import ROOT, Deployment, free_port, http, start_process, wait_until_answers

# Django's own test of a strong key wants 50+ characters and 5+ distinct ones.
SECRET_CHARACTERS = string.ascii_letters + string.digits + "!@#%^&*(-_=+)"


def _production_env(**values: str) -> dict[str, str]:
    """Only the documented variables an operator sets: no .env file, no test settings."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")
    env = {name: value for name, value in os.environ.items() if name in keep}
    env.update(DJANGO_SETTINGS_MODULE="project.settings", ENV_FILE="", **values)
    return env


def _manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def test_check_deploy_is_clean_with_debug_off_and_real_values():
    env = _production_env(
        SECRET_KEY="".join(secrets.choice(SECRET_CHARACTERS) for _ in range(50)),
        DEBUG="false",
        ALLOWED_HOSTS="example.com",
    )
    result = _manage(env, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


@pytest.mark.parametrize("entry_point", ["project.wsgi", "project.asgi"])
def test_the_server_refuses_to_start_without_a_secret_key_in_one_line(entry_point):
    # What granian (scripts/server) and runserver do first: import the application.
    result = subprocess.run(
        [sys.executable, "-c", f"import {entry_point}"],
        cwd=ROOT,
        env=_production_env(DEBUG="false"),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 1
    assert result.stderr.startswith("SECRET_KEY must be set when DEBUG is off"), result.stderr
    assert "DEBUG=true for local development" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "manage.py", "runserver", "127.0.0.1:0"],  # with its autoreloader
        ["bash", "scripts/server"],
    ],
    ids=["runserver", "scripts/server"],
)
def test_runserver_and_scripts_server_exit_on_one_line_without_a_secret_key(command):
    result = subprocess.run(
        command,
        cwd=ROOT,
        env=_production_env(DEBUG="false", PORT=str(free_port()), WORKERS="1"),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )

    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.strip().splitlines() == [
        "SECRET_KEY must be set when DEBUG is off: set it in the environment or in .env"
        " (see .env.example), or run with DEBUG=true for local development."
    ]
    assert "Listening" not in result.stdout + result.stderr  # granian never started


@pytest.mark.parametrize(("debug", "expected"), [("true", "plain"), ("false", "json")])
def test_logs_are_for_people_with_debug_and_json_lines_otherwise(debug, expected):
    # stderr is a pipe here, as under a service manager or in a container.
    result = subprocess.run(
        [sys.executable, "-c", "from django.conf import settings; print(settings.LOG_FORMAT)"],
        cwd=ROOT,
        env=_production_env(DEBUG=debug, SECRET_KEY="x" * 50),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.stdout.strip() == expected, result.stderr


def test_the_server_serves_admin_static_files_and_logs_one_json_line_per_request(tmp_path):
    # Static files, /health and the admin's login page need no migrated database.
    installation = Deployment(tmp_path, database_url=f"sqlite:///{tmp_path / 'unused.sqlite3'}")
    try:
        installation.manage("collectstatic", "--noinput", "-v", "0")
        # Production defaults (HTTPS redirect on), behind a proxy that terminates TLS.
        server = installation.start_server("web", workers=1, SECURE_SSL_REDIRECT="true")
        https = {"X-Forwarded-Proto": "https"}

        plain = http("GET", f"{server}/static/admin/css/base.css", headers={})
        assert plain.status == 301  # plain HTTP is sent to HTTPS
        assert plain.headers["Location"].startswith("https://")

        css = http("GET", f"{server}/static/admin/css/base.css", headers=https)
        assert css.status == 200
        assert css.headers["Content-Type"].startswith("text/css")
        assert b"body" in css.body

        # The admin's pages link the hashed names, which are cached for ever and compressed.
        login = http("GET", f"{server}/admin/login/", headers=https)
        assert login.status == 200
        hashed = re.search(rb'href="(/static/admin/css/base\.[0-9a-f]{12}\.css)"', login.body)
        assert hashed, login.body[:2000]
        cached = http(
            "GET",
            server + hashed.group(1).decode(),
            headers={**https, "Accept-Encoding": "gzip"},
        )
        assert cached.status == 200
        assert "immutable" in cached.headers["Cache-Control"]
        assert cached.headers.get("Content-Encoding") in ("gzip", "br")
        assert login.headers["Strict-Transport-Security"].startswith("max-age=")

        health = http("GET", f"{server}/health", headers={"X-Request-ID": "lb-trace-42"})
        assert health.status == 200
        assert health.headers["X-Request-ID"] == "lb-trace-42"

        installation.stop()  # flush and close the log
        records = []
        for line in (tmp_path / "web" / "server.log").read_text().splitlines():
            if line.startswith("{"):
                records.append(json.loads(line))
        requests = [r for r in records if r.get("logger") == "chatmodels.requests"]
        by_path = {(r["path"], r["status"]) for r in requests}
        assert ("/static/admin/css/base.css", 301) in by_path
        assert ("/admin/login/", 200) in by_path
        (traced,) = [r for r in requests if r["request_id"] == "lb-trace-42"]
        assert traced["path"] == "/health" and traced["method"] == "GET"
        assert traced["status"] == 200 and traced["duration_ms"] >= 0
        assert len({r["request_id"] for r in requests}) == len(requests)  # one id per request
    finally:
        installation.stop()


def _variables_read_by(path) -> set[str]:
    source = (ROOT / path).read_text()
    python = r"""(?:env(?:\.\w+)?\(|environ\.get\(|environ\[)\s*["']([A-Z][A-Z0-9_]*)["']"""
    shell = r"\$\{([A-Z][A-Z0-9_]*)"
    return set(re.findall(python, source)) | set(re.findall(shell, source))


def test_every_configuration_variable_is_documented():
    variables = _variables_read_by("project/settings.py") | _variables_read_by("scripts/server")
    assert {
        "SECRET_KEY",
        "DATABASE_URL",
        "AWS_S3_ENDPOINT_URL",
        "WORKERS",
        "MAX_IN_FLIGHT",
        "HOST",
        "PORT",
        "CHATMODELS_QUEUE_TIMEOUT",
        "GRACEFUL_TIMEOUT",
    } <= variables
    deploy_doc = (ROOT / "docs" / "deploy.md").read_text()
    env_example = (ROOT / ".env.example").read_text()
    assert sorted(v for v in variables if f"`{v}`" not in deploy_doc) == []
    assert sorted(v for v in variables if not re.search(rf"^#? ?{v}=", env_example, re.M)) == []


def test_compose_file_runs_migrations_and_bucket_creation_before_the_app():
    yaml = pytest.importorskip("yaml")
    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    assert {"db", "minio", "create-bucket", "migrate", "app"} <= set(services)
    assert services["app"]["depends_on"] == {
        "migrate": {"condition": "service_completed_successfully"},
        "create-bucket": {"condition": "service_completed_successfully"},
    }
    assert services["migrate"]["command"] == ["python", "manage.py", "migrate", "--noinput"]
    app_env = services["app"]["environment"]
    assert (
        app_env["DATABASE_URL"].startswith("postgres://") and "@db:5432/" in app_env["DATABASE_URL"]
    )
    assert app_env["AWS_S3_ENDPOINT_URL"] == "http://minio:9000"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'CMD ["./scripts/server"]' in dockerfile
    assert "\nUSER chatmodels\n" in dockerfile


# --- a fresh clone ----------------------------------------------------------------------------


def _fresh_clone(directory: Path) -> Path:
    """What `git clone` gives: the code, no var/, .env, static files or virtualenv."""
    directory.mkdir(parents=True)
    for name in ("manage.py", "requirements.txt"):
        shutil.copy2(ROOT / name, directory / name)
    for name in ("project", "chatmodels", "templates", "examples", "scripts"):
        shutil.copytree(ROOT / name, directory / name, ignore=shutil.ignore_patterns("__pycache__"))
    return directory


def _clean_env(**values: str) -> dict[str, str]:
    """A new user's shell: no chatmodels variables at all, not even DJANGO_SETTINGS_MODULE."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")
    return {name: value for name, value in os.environ.items() if name in keep} | values


class _Browser:
    """urllib with a cookie jar that, like a browser, sends `Secure` cookies only over HTTPS."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.cookies = CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPCookieProcessor(self.cookies)
        )

    def open(self, path: str, form: dict[str, str] | None = None):
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        return self.opener.open(self.base_url + path, data=data, timeout=30)


@pytest.mark.slow
def test_a_fresh_clone_migrates_and_runs_the_admin_under_runserver_with_debug(tmp_path):
    clone = _fresh_clone(tmp_path / "chatmodels")
    manage = [sys.executable, str(clone / "manage.py")]
    # No SECRET_KEY and no DEBUG: commands that sign nothing work, and make var/ themselves.
    migrate = subprocess.run(
        [*manage, "migrate", "-v", "0"], env=_clean_env(), capture_output=True, text=True
    )
    assert migrate.returncode == 0, migrate.stderr
    assert (clone / "var" / "db.sqlite3").is_file()
    superuser = subprocess.run(
        [*manage, "createsuperuser", "--noinput", "--username", "ada", "--email", "a@localhost"],
        env=_clean_env(DJANGO_SUPERUSER_PASSWORD="a long local password"),
        capture_output=True,
        text=True,
    )
    assert superuser.returncode == 0, superuser.stderr

    port = free_port()
    server = start_process(
        [*manage, "runserver", "--noreload", f"127.0.0.1:{port}"],
        env=_clean_env(DEBUG="true"),
        log_path=tmp_path / "runserver.log",
        name="runserver",
    )
    try:
        assert wait_until_answers(server, f"http://localhost:{port}/health"), server.log()
        browser = _Browser(f"http://localhost:{port}")
        login = browser.open("/admin/login/")
        assert login.status == 200 and login.url.startswith("http://")  # no HTTPS redirect
        assert "Strict-Transport-Security" not in login.headers
        page = login.read().decode()
        stylesheet = re.search(r'href="(/static/admin/css/base\.css)"', page)
        assert stylesheet, page[:2000]  # served from the apps, no collectstatic needed
        assert browser.open(stylesheet.group(1)).status == 200

        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        form = {"username": "ada", "password": "a long local password", "next": "/admin/"}
        index = browser.open("/admin/login/", {**form, "csrfmiddlewaretoken": token})
        assert index.url == f"http://localhost:{port}/admin/", index.url
        assert 'id="logout-form"' in index.read().decode()  # logged in
        models_page = browser.open("/admin/chatmodels/registeredmodel/")
        assert models_page.status == 200
        assert 'id="changelist"' in models_page.read().decode()
        assert all(not cookie.secure for cookie in browser.cookies)
    finally:
        server.stop()


# --- scripts/serve ----------------------------------------------------------------------------


def _venv_sharing_this_one(clone: Path) -> None:
    """A .venv for the clone that sees this test run's installed packages (through a .pth file),
    with the stamp that scripts/serve leaves after installing requirements.txt."""
    venv.EnvBuilder(with_pip=False, symlinks=True).create(clone / ".venv")
    purelib = sysconfig.get_paths()["purelib"]
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site_packages = clone / ".venv" / "lib" / version / "site-packages"
    (site_packages / "this-test-run.pth").write_text(purelib + "\n")
    requirements = hashlib.sha256((clone / "requirements.txt").read_bytes()).hexdigest()
    (clone / ".venv" / "chatmodels-requirements.sha256").write_text(requirements + "\n")


def _serve(clone: Path, log_path: Path) -> tuple[str, str]:
    """Run ./scripts/serve until its server answers, then stop it: its output and its URL."""
    port = free_port()
    process = start_process(
        ["bash", str(clone / "scripts" / "serve")],
        env=_clean_env(PORT=str(port), WORKERS="1", MAX_IN_FLIGHT="8"),
        log_path=log_path,
        name="scripts/serve",
    )
    try:
        # The first start migrates and collects the static files: give it time on a busy machine.
        answered = wait_until_answers(process, f"http://127.0.0.1:{port}/health", timeout=300)
        assert answered, process.log()
    finally:
        process.stop()
    return process.log(), f"http://127.0.0.1:{port}"


@pytest.mark.slow
def test_serve_says_each_step_skips_what_is_done_and_reuses_its_demo_key(tmp_path):
    clone = _fresh_clone(tmp_path / "chatmodels")
    _venv_sharing_this_one(clone)
    key_file = clone / "var" / "demo-api-key"

    first, _ = _serve(clone, tmp_path / "first.log")

    assert "==> Writing .env: a fresh SECRET_KEY" in first
    assert re.search(r"^==> Applying \d+ database migrations$", first, re.MULTILINE), first
    assert "==> Collecting static files" in first
    assert "==> Registering the demo model echo" in first
    assert "==> Creating a demo API key for all models, kept in var/demo-api-key" in first
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text().strip()
    assert f"API key: {key}" in first

    second, base_url = _serve(clone, tmp_path / "second.log")

    steps = [line for line in second.splitlines() if line.startswith("==> ")]
    assert steps[:3] == [
        "==> Requirements unchanged since the last install: skipping pip",
        "==> Using the settings in .env",
        "==> Database is up to date: no migrations to apply",
    ]
    assert "==> Static files unchanged: skipping collectstatic" in steps
    assert "==> Demo model echo is registered" in steps
    assert "==> Reusing the demo API key in var/demo-api-key" in steps
    assert (
        "==> Starting ./scripts/server on 127.0.0.1 port "
        f"{base_url.rsplit(':', 1)[1]} (this machine only; HOST=0.0.0.0 listens on every interface)"
    ) in steps
    assert key_file.read_text().strip() == key
    assert re.search(r"Listening at: http://127\.0\.0\.1:\d+", second), second

    revoke = subprocess.run(
        [sys.executable, str(clone / "manage.py"), "revoke_api_key", key],
        env=_clean_env(),
        capture_output=True,
        text=True,
    )
    assert revoke.returncode == 0, revoke.stderr
    third, _ = _serve(clone, tmp_path / "third.log")

    assert "==> Creating a demo API key for all models" in third
    assert key_file.read_text().strip() != key
