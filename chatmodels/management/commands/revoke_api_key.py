"""`manage.py revoke_api_key PREFIX`: revoke a key by the prefix shown in the admin."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from chatmodels import services
from chatmodels.management.commands._common import one_line_errors


class Command(BaseCommand):
    help = "Revoke the API key with this prefix; it stops working on the next request."

    def add_arguments(self, parser) -> None:
        parser.add_argument("prefix")

    def handle(self, *args, **options) -> None:
        with one_line_errors():
            key = services.revoke_api_key(key=options["prefix"])
        self.stdout.write(f"Revoked {key}")
