"""`manage.py list_models`: the registry as a table (or `--names`, one per line)."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from chatmodels import selectors


class Command(BaseCommand):
    help = "List registered models with their latest version and aliases."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--names", action="store_true", help="print only names")

    def handle(self, *args, **options) -> None:
        models = list(selectors.list_models())
        if options["names"]:
            for model in models:
                self.stdout.write(model.name)
            return
        if not models:
            self.stdout.write("No models registered yet.")
            return
        rows = [("NAME", "LATEST", "VERSIONS", "ALIASES", "DESCRIPTION")]
        for model in models:
            aliases = ", ".join(f"{a.name}->{a.version.version}" for a in model.aliases.all())
            rows.append(
                (
                    model.name,
                    str(model.latest_version or "-"),
                    str(model.version_count),
                    aliases or "-",
                    (model.description or "").splitlines()[0][:60] if model.description else "",
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
        for row in rows:
            cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
            self.stdout.write("  ".join([*cells, row[-1]]).rstrip())
