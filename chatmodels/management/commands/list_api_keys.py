"""`manage.py list_api_keys`: every API key as a table (the raw keys are never stored)."""

from __future__ import annotations

from django.core.management.base import BaseCommand
from django.utils import timezone

from chatmodels import selectors


class Command(BaseCommand):
    help = "List API keys: name, prefix, models, when created, and whether active or revoked."

    def handle(self, *args, **options) -> None:
        keys = list(selectors.list_api_keys())
        if not keys:
            self.stdout.write("No API keys yet (create one with create_api_key).")
            return
        rows = [("NAME", "PREFIX", "MODELS", "CREATED", "STATUS")]
        for key in keys:
            models = ", ".join(model.name for model in key.allowed_models.all())
            status = "active" if key.is_active else f"revoked {_when(key.revoked_at)}"
            rows.append(
                (key.name, f"{key.prefix}…", models or "all", _when(key.created_at), status)
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
        for row in rows:
            cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
            self.stdout.write("  ".join([*cells, row[-1]]))


def _when(moment) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M")
