"""`manage.py prune_orphan_packages [--dry-run] [--older-than SECONDS]`: remove package files
that no version refers to (left by a registration killed between writing and committing)."""

from __future__ import annotations

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError

from chatmodels import services


class Command(BaseCommand):
    help = (
        "Remove package files in the package storage (local or S3) that no version refers to."
        " Files younger than --older-than are kept: they may belong to a registration in flight."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="list what would be removed; remove nothing"
        )
        parser.add_argument(
            "--older-than",
            type=int,
            default=int(services.ORPHAN_GRACE.total_seconds()),
            metavar="SECONDS",
            help="only files last written at least this long ago (default: %(default)s)",
        )

    def handle(self, *args, **options) -> None:
        seconds = options["older_than"]
        if seconds < 0:
            raise CommandError(f"--older-than is a number of seconds >= 0, got {seconds}")
        dry_run = options["dry_run"]
        orphans = services.prune_orphan_packages(
            older_than=timedelta(seconds=seconds), dry_run=dry_run
        )
        verb = "Would remove" if dry_run else "Removed"
        for orphan in orphans:
            written = orphan.modified.strftime("%Y-%m-%d %H:%M:%S %Z")
            self.stdout.write(f"{verb} {orphan.name} ({orphan.size} bytes, written {written})")
        total = sum(orphan.size for orphan in orphans)
        files = "file" if len(orphans) == 1 else "files"
        self.stdout.write(
            f"{verb} {len(orphans)} orphan package {files} ({total} bytes) older than {seconds} s."
        )
