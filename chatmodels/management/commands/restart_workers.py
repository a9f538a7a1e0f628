"""`manage.py restart_workers NAME`: restart a model's worker processes on this host."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from chatmodels import services
from chatmodels.management.commands._common import one_line_errors


class Command(BaseCommand):
    help = (
        "Restart a model's worker processes in every server process of this host (within about"
        " a second), clearing a crash loop that made it unavailable. Run it on each host."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("name", help="the model's name")

    def handle(self, *args, **options) -> None:
        with one_line_errors():
            restart = services.restart_model_workers(name=options["name"])
        self.stdout.write(str(restart))
