"""ASGI entry point: the server's application (scripts/server runs it under granian)."""

import os

import django

from project.serving import require_secret_key

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
require_secret_key()
django.setup(set_prefix=False)

from chatmodels.api.front import ASGIHandler, Front  # noqa: E402 (needs the apps loaded)

application = Front(ASGIHandler())
