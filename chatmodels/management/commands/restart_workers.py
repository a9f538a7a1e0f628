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
        name = options["name"]
        with one_line_errors():
            running = services.restart_model_workers(name=name)
        if running:
            where = "1 server process" if running == 1 else f"{running} server processes"
            self.stdout.write(f"Restarting the workers of {name} in {where} of this host")
        else:
            self.stdout.write(
                f"No workers of {name} run on this host; its next request starts them"
            )
