"""`manage.py prune_responses [--older-than DAYS]`: delete stored responses past their retention."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from chatmodels import responses_store
from chatmodels.management.commands._common import one_line_errors


class Command(BaseCommand):
    help = (
        "Delete the stored responses of /v1/responses made more than DAYS days ago, and the"
        " items no stored response or conversation uses any more; DAYS defaults to"
        " CHATMODELS_RESPONSES_RETENTION_DAYS. Conversations are kept until deleted."
        " Run it daily (cron)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--older-than",
            type=int,
            metavar="DAYS",
            default=None,
            help="keep this many days (default: CHATMODELS_RESPONSES_RETENTION_DAYS)",
        )

    def handle(self, *args, **options) -> None:
        days = options["older_than"]
        if days is None:
            days = settings.CHATMODELS_RESPONSES_RETENTION_DAYS
        with one_line_errors({"older_than_days": "--older-than"}):  # named as typed
            deleted = responses_store.prune_responses(older_than_days=days)
        plural = "" if deleted == 1 else "s"
        self.stdout.write(f"Deleted {deleted} stored response{plural} older than {days} days")
