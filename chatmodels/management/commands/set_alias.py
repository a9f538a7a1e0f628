"""`manage.py set_alias NAME ALIAS VERSION` moves an alias; `--delete` removes it."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from chatmodels import services
from chatmodels.management.commands._common import (
    add_version_argument,
    one_line_errors,
    version_of,
)


class Command(BaseCommand):
    help = "Point NAME@ALIAS at VERSION, or remove the alias with --delete."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name", help="the model's name")
        parser.add_argument("alias", help="the alias, e.g. prod (NAME@ALIAS in requests)")
        add_version_argument(parser, required=False)
        parser.add_argument("--delete", action="store_true", help="remove the alias")

    def handle(self, *args, **options) -> None:
        name, alias, version = options["name"], options["alias"], version_of(options)
        with one_line_errors():
            if options["delete"]:
                services.remove_alias(name=name, alias=alias)
                self.stdout.write(f"Removed {name}@{alias}")
                return
            if version is None:
                raise CommandError("give a VERSION, or --delete to remove the alias")
            services.set_alias(name=name, alias=alias, version=version)
        self.stdout.write(f"{name}@{alias} -> version {version}")
