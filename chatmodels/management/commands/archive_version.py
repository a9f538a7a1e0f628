"""`manage.py archive_version NAME VERSION [--restore]`: take a version out of "latest", or back."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from chatmodels import services
from chatmodels.management.commands._common import one_line_errors
from chatmodels.models import ModelVersion


class Command(BaseCommand):
    help = (
        "Archive a version: it is never chosen as the model's latest, but stays served by its"
        " number and by any alias that points at it. --restore makes it ready again."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("name")
        parser.add_argument("version", type=int)
        parser.add_argument("--restore", action="store_true", help="make it ready again")

    def handle(self, *args, **options) -> None:
        status = ModelVersion.Status.READY if options["restore"] else ModelVersion.Status.ARCHIVED
        with one_line_errors():
            version = services.set_version_status(
                name=options["name"],
                version=options["version"],
                # Python 3.10 has no enum.StrEnum, on which django-stubs build TextChoices: mypy
                # takes the members for their (value, label) tuples.
                status=status,  # type: ignore[arg-type]
            )
        if options["restore"]:
            self.stdout.write(f"Restored {version}: it may be chosen as the latest again")
            return
        names = [str(version)]
        names += [f"{version.model.name}@{alias.name}" for alias in version.aliases.all()]
        served = ", ".join(names)
        self.stdout.write(
            f"Archived {version}: no longer chosen as the latest; still served as {served}"
        )
