"""What the server entry points (WSGI, ASGI, and so runserver) check before they serve."""

import sys

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def require_secret_key() -> None:
    """A server signs sessions and CSRF tokens with SECRET_KEY: without one, stop on one line
    that says what to do (Django itself would fail later, on a request, with a traceback)."""
    try:
        settings.SECRET_KEY  # noqa: B018 (Django refuses an empty key when it is read)
    except ImproperlyConfigured:
        sys.exit(
            "SECRET_KEY must be set when DEBUG is off: set it in the environment or in .env"
            " (see .env.example), or run with DEBUG=true for local development."
        )


if __name__ == "__main__":
    # scripts/server runs this before granian: a worker that exits at import is respawned over
    # and over, so the check that can fail on one line runs once, in front of them.
    import os

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    require_secret_key()
