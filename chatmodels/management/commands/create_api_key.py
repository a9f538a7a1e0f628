"""`manage.py create_api_key NAME [--model M]...`: the raw key is printed once, on the last line."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from chatmodels import services
from chatmodels.management.commands._common import one_line_errors


class Command(BaseCommand):
    help = "Create an API key (optionally limited to some models) and print it once."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name", help="who or what the key is for")
        parser.add_argument("--model", action="append", default=[], help="limit to this model")

    def handle(self, *args, **options) -> None:
        with one_line_errors():
            key, raw_key = services.create_api_key(name=options["name"], models=options["model"])
        scope = ", ".join(options["model"]) if options["model"] else "all models"
        self.stdout.write(f"Created API key {key.prefix}… for {scope}. It is shown only once:")
        self.stdout.write(raw_key)
