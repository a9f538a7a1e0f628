"""`manage.py setup_demo`: what ./scripts/serve prepares before it serves, in one process (each
Django start costs a second or more): migrations, the demo echo model, the admin user and the demo
API key, each step on one line and skipped when already done.

With UPSTREAM_BASE_URL (and UPSTREAM_MODEL, the upstream's model name) in the environment or
.env, it also registers `upstream`: `chatmodels.contrib:OpenAICompatibleModel` forwarding there,
its key read from UPSTREAM_API_KEY by the model's worker. A new version only when they change.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from chatmodels import selectors, services
from chatmodels.exceptions import ChatModelsError, ModelNotFound
from chatmodels.management.commands._common import one_line_errors

UPSTREAM_MODEL = "upstream"
UPSTREAM_TARGET = "chatmodels.contrib:OpenAICompatibleModel"
DEMO_MODEL = "echo"
DEMO_TARGET = "examples/echo.py:EchoModel"
ADMIN_USER = "admin"


class Command(BaseCommand):
    help = (
        "Prepare a demo install (./scripts/serve runs it): apply migrations, register the echo"
        " model, create the admin user and a demo API key; each only when missing. The admin's"
        " password and the key are kept in files readable by their owner only."
    )

    def add_arguments(self, parser) -> None:
        var = Path(settings.VAR_DIR)
        parser.add_argument("--password-file", type=Path, default=var / "admin-password")
        parser.add_argument("--key-file", type=Path, default=var / "demo-api-key")

    def handle(self, *args, **options) -> None:
        self.step("Applying database migrations")
        call_command("migrate", interactive=False, verbosity=0)
        with one_line_errors():
            self.demo_model()
        self.upstream_model()
        self.admin_user(options["password_file"])
        self.demo_key(options["key_file"])

    def step(self, text: str) -> None:
        self.stdout.write(f"==> {text}")

    def demo_model(self) -> None:
        try:
            selectors.get_model(name=DEMO_MODEL)
        except ModelNotFound:
            pass
        else:
            self.step(f"Demo model {DEMO_MODEL} is registered")
            return
        self.step(f"Registering the demo model {DEMO_MODEL} ({DEMO_TARGET.split(':')[0]})")
        services.register_model(
            DEMO_MODEL,
            str(Path(settings.BASE_DIR) / DEMO_TARGET),
            aliases=["prod"],
            description="Echoes the last user message back (demo).",
            created_by="setup_demo",
        )

    def upstream_model(self) -> None:
        base_url = os.environ.get("UPSTREAM_BASE_URL", "")
        if not base_url:
            return
        config = {"base_url": base_url, "model": os.environ.get("UPSTREAM_MODEL", "")}
        if os.environ.get("UPSTREAM_API_KEY"):
            config["api_key_env"] = "UPSTREAM_API_KEY"  # the key itself is never stored
        try:
            latest = selectors.list_versions(name=UPSTREAM_MODEL).first()
        except ModelNotFound:
            latest = None
        if latest is not None and latest.model_config == config:
            self.step(f"Model {UPSTREAM_MODEL} forwards to {base_url}")
            return
        self.step(f"Registering {UPSTREAM_MODEL}: OpenAICompatibleModel forwarding to {base_url}")
        if not config["model"]:
            self.stderr.write("    skipped: set UPSTREAM_MODEL to the upstream's model name")
            return
        try:
            services.register_model(
                UPSTREAM_MODEL,
                UPSTREAM_TARGET,
                model_config=config,
                description=f"Forwards to {base_url} ({config['model']}).",
                created_by="setup_demo",
            )
        except ChatModelsError as error:  # an upstream that is down must not stop the demo
            self.stderr.write(f"    not registered: {error}")

    def admin_user(self, password_file: Path) -> None:
        shown = _shown(password_file)
        user_model = get_user_model()
        if password_file.is_file() and user_model.objects.filter(username=ADMIN_USER).exists():
            self.step(f"Admin user {ADMIN_USER} exists (password in {shown})")
            return
        self.step(f"Creating the admin user {ADMIN_USER} (password in {shown})")
        password = secrets.token_urlsafe(12)
        user, _created = user_model.objects.get_or_create(
            username=ADMIN_USER, defaults={"email": f"{ADMIN_USER}@localhost"}
        )
        user.is_staff = user.is_superuser = user.is_active = True
        user.set_password(password)
        user.save()
        _write_private(password_file, password)

    def demo_key(self, key_file: Path) -> None:
        # Reused while it is active, so that a restart keeps the key people already copied.
        shown = _shown(key_file)
        if key_file.is_file() and selectors.get_api_key(key_file.read_text().strip()):
            self.step(f"Reusing the demo API key in {shown}")
            return
        self.step(f"Creating a demo API key for all models, kept in {shown}")
        _key, raw_key = services.create_api_key(name="scripts/serve demo")
        _write_private(key_file, raw_key)


def _write_private(path: Path, text: str) -> None:
    """Write `text` to a file only its owner may read (mode 600), even if it existed before."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text + "\n")
    os.chmod(path, 0o600)


def _shown(path: Path) -> str:
    """The path as people know it: relative to the project when it lies inside."""
    try:
        return str(path.resolve().relative_to(Path(settings.BASE_DIR).resolve()))
    except ValueError:
        return str(path)
