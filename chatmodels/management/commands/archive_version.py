"""`manage.py archive_version NAME VERSION [--restore]`: take a version out of "latest", or back."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from chatmodels import selectors, services
from chatmodels.management.commands._common import (
    add_version_argument,
    one_line_errors,
    version_of,
)
from chatmodels.models import ModelVersion


class Command(BaseCommand):
    help = (
        "Archive a version: it is never chosen as the model's latest, but stays served by its"
        " number and by any alias that points at it. --restore makes it ready again."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("name", help="the model's name")
        add_version_argument(parser, required=True)
        parser.add_argument("--restore", action="store_true", help="make it ready again")

    def handle(self, *args, **options) -> None:
        number = version_of(options)
        if number is None:
            raise CommandError("give the VERSION to archive (or to --restore)")
        status = ModelVersion.Status.READY if options["restore"] else ModelVersion.Status.ARCHIVED
        with one_line_errors():
            versions = selectors.list_versions(name=options["name"]).filter(version=number)
            before = versions.values_list("status", flat=True).first()
            version = services.set_version_status(
                name=options["name"],
                version=number,
                # Python 3.10 has no enum.StrEnum, on which django-stubs build TextChoices: mypy
                # takes the members for their (value, label) tuples.
                status=status,  # type: ignore[arg-type]
            )
        if before == status:
            state = "ready" if options["restore"] else "archived"
            self.stdout.write(f"{version} is already {state}: nothing changed")
            return
        if options["restore"]:
            self.stdout.write(f"Restored {version}: it may be chosen as the latest again")
            return
        names = [str(version)]
        names += [f"{version.model.name}@{alias.name}" for alias in version.aliases.all()]
        served = ", ".join(names)
        self.stdout.write(
            f"Archived {version}: no longer chosen as the latest; still served as {served}"
        )
