"""Production settings as an operator runs them: `check --deploy` clean with DEBUG off, the admin's
static files served by whitenoise under the production server, one JSON log line per request.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import string
import subprocess
import sys

import pytest

from tests.live import ROOT, Deployment, http

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


def test_production_settings_refuse_to_start_without_a_secret_key():
    result = _manage(_production_env(DEBUG="false"), "check")
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


@pytest.mark.slow
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
        "THREADS",
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
