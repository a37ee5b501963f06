"""`manage.py cleanup_tasks --older-than 30d [--status FAILED …] [--dry-run]`

Deletes finished tasks created before the cutoff, with their log lines, in batches; prints
what it removed (or, with --dry-run, what it would remove). Also runs daily from beat with
TASK_RETENTION_DAYS.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from tasks_app.models import TERMINAL_STATUSES
from tasks_app.services import parse_age, tasks_cleanup


class Command(BaseCommand):
    help = "Delete finished tasks (and their logs) older than an age such as 30d."

    def add_arguments(self, parser):
        parser.add_argument("--older-than", required=True, help="age: 90s, 30m, 12h, 30d, 2w")
        parser.add_argument(
            "--status", action="append", default=None, type=str.upper,
            help=f"only these statuses (repeatable; default all of {', '.join(TERMINAL_STATUSES)})",
        )  # fmt: skip
        parser.add_argument("--dry-run", action="store_true")
        parser.add_argument("--batch-size", type=int, default=200)

    def handle(self, *args, **options):
        try:
            age = parse_age(options["older_than"])
        except ValueError as exc:
            raise CommandError(f"--older-than: {exc}")
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        try:
            counts = tasks_cleanup(
                older_than=age, statuses=options["status"], dry_run=options["dry_run"],
                batch_size=options["batch_size"],
            )  # fmt: skip
        except ValueError as exc:
            raise CommandError(f"--status: {exc}")
        verb = "would delete" if options["dry_run"] else "deleted"
        self.stdout.write(f"{verb} {counts['tasks']} task(s) and {counts['logs']} log line(s)")
