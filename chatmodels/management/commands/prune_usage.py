"""`manage.py prune_usage [--older-than DAYS]`: delete usage buckets past their retention."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from chatmodels import services
from chatmodels.management.commands._common import one_line_errors


class Command(BaseCommand):
    help = (
        "Delete the usage buckets (requests and tokens per model, key and hour) of hours older"
        " than DAYS days; DAYS defaults to CHATMODELS_USAGE_RETENTION_DAYS. Run it daily (cron)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--older-than",
            type=int,
            metavar="DAYS",
            default=None,
            help="keep this many days (default: CHATMODELS_USAGE_RETENTION_DAYS)",
        )

    def handle(self, *args, **options) -> None:
        days = options["older_than"]
        if days is None:
            days = settings.CHATMODELS_USAGE_RETENTION_DAYS
        with one_line_errors({"older_than_days": "--older-than"}):
            deleted = services.prune_usage(older_than_days=days)
        plural = "" if deleted == 1 else "s"
        self.stdout.write(f"Deleted {deleted} usage bucket{plural} older than {days} days")
