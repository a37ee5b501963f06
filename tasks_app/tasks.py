"""Celery tasks: interfaces, not logic. They take ids and call into runner/services.

`run_task` is acks_late + reject_on_worker_lost: if the worker dies the message goes back to
the broker, and the redelivered message finds the task RUNNING (or FAILED by the reaper) and
does nothing — `Task.mark_running()` is a compare-and-set.
"""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.conf import settings

from tasks_app import runner, services


@shared_task(
    name="tasks_app.run_task", bind=True, acks_late=True, reject_on_worker_lost=True,
    ignore_result=True,
)  # fmt: skip
def run_task(self, task_id: str) -> str:
    return runner.execute_task(task_id, worker=self.request.hostname or "")


@shared_task(name="tasks_app.reap_lost_tasks", ignore_result=True)
def reap_lost_tasks() -> dict[str, list[str]]:
    """A reaper pass on a worker, on demand. The periodic pass runs in the beat process (a
    dead worker cannot reap itself, and with one worker there would be none to do it)."""
    return services.tasks_reap_pass()


@shared_task(name="tasks_app.cleanup_old_tasks", ignore_result=True)
def cleanup_old_tasks() -> dict[str, int]:
    if not settings.TASK_RETENTION_DAYS:
        return {"tasks": 0, "logs": 0}
    return services.tasks_cleanup(older_than=timedelta(days=settings.TASK_RETENTION_DAYS))
