"""`manage.py revoke_api_key KEY`: revoke a key given whole or by a unique prefix (as printed)."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from chatmodels import services
from chatmodels.management.commands._common import one_line_errors


class Command(BaseCommand):
    help = (
        "Revoke an API key, given whole or by a unique prefix as list_api_keys and the admin"
        " print it (with or without the trailing …); it stops working on the next request."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("key", metavar="KEY_OR_PREFIX", help="e.g. cm_AbCdEfGhI…")

    def handle(self, *args, **options) -> None:
        with one_line_errors():
            key = services.revoke_api_key(key=options["key"])
        self.stdout.write(f"Revoked {key}")
