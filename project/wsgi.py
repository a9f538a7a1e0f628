"""WSGI entry point (scripts/server runs it under granian: project.wsgi:application)."""

import os

from django.core.wsgi import get_wsgi_application

from project.serving import require_secret_key

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
require_secret_key()
application = get_wsgi_application()
