"""``manage.py prunetaskruns --older-than DAYS [--keep-failed] [--dry-run]``: keep the run history bounded."""

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from ...status import RunStatus
from ...taskrun import TaskRun

#: Rows deleted per transaction, so a large prune never holds SQLite's write lock for long.
CHUNK = 1000
FAILED = [RunStatus.FAILED, RunStatus.TIMED_OUT]


def days(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise CommandError(f"--older-than takes a number of days, got {text!r}") from None
    if not 0 < value < 36500:
        raise CommandError(f"--older-than takes a number of days above 0 and under 36500, got {text!r}")
    return value


class Command(BaseCommand):
    help = "Delete finished task runs older than a number of days (running runs are never touched)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than", required=True, metavar="DAYS", help="Age in days (e.g. 30).")
        parser.add_argument("--keep-failed", action="store_true", help="Keep failed and timed-out runs.")
        parser.add_argument("--dry-run", action="store_true", help="Only say how many would go.")

    def handle(self, *args: Any, **options: Any) -> None:
        cutoff = timezone.now() - timedelta(days=days(options["older_than"]))
        old = TaskRun.objects.filter(finished_at__isnull=False, finished_at__lt=cutoff)
        if options["keep_failed"]:
            old = old.exclude(status__in=FAILED)
        if options["dry_run"]:
            self.stdout.write(f"Would delete {old.count()} runs finished before {cutoff:%Y-%m-%d %H:%M} UTC.")
            return
        deleted = 0
        while ids := list(old.values_list("id", flat=True)[:CHUNK]):
            deleted += TaskRun.objects.filter(id__in=ids).delete()[0]
        self.stdout.write(f"Deleted {deleted} runs finished before {cutoff:%Y-%m-%d %H:%M} UTC.")
