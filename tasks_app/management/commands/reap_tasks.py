"""`manage.py reap_tasks [--lost-after SECONDS]`: fail RUNNING tasks whose worker went silent,
and enqueue again PENDING tasks whose broker message is gone (TASK_REQUEUE_AFTER_SECONDS).

The same pass the beat process runs every TASK_REAP_INTERVAL_SECONDS (octopus/celery.py).
"""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from tasks_app.services import tasks_reap_pass


class Command(BaseCommand):
    help = (
        "Mark RUNNING tasks without a recent heartbeat FAILED (worker lost); enqueue again "
        "PENDING tasks whose message the broker no longer holds."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--lost-after", type=int, default=None,
            help=f"seconds without a heartbeat (default {settings.TASK_LOST_AFTER_SECONDS})",
        )  # fmt: skip

    def handle(self, *args, **options):
        lost_after = options["lost_after"]
        if lost_after is not None and lost_after < 1:
            raise CommandError("--lost-after must be at least 1 second")
        done = tasks_reap_pass(lost_after_seconds=lost_after)
        for task_id in done["failed"]:
            self.stdout.write(f"failed {task_id} (worker lost)")
        self.stdout.write(f"reaped {len(done['failed'])} task(s)")
        for task_id in done["requeued"]:
            self.stdout.write(f"requeued {task_id} (PENDING, its message was gone)")
        self.stdout.write(f"requeued {len(done['requeued'])} task(s)")
