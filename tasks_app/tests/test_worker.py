"""End to end through a real `celery worker` process, the real broker and the database."""

from __future__ import annotations

import io
import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from tasks_app.models import Task, TaskLog, TaskStatus
from tasks_app.services import task_cancel, task_create
from tasks_app.tasks import run_task
from tasks_app.tests.conftest import wait_for, wait_for_status

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

SLOW = """
import time
def run(context, steps: int = 1000):
    for i in range(steps):
        context.log.info("step %d", i)
        time.sleep(0.05)
"""


def test_a_task_created_by_the_service_runs_on_a_worker(worker_factory, make_plugin, alice):
    plugin = make_plugin("hello", "def run(context, who):\n    context.log.info('hi %s', who)\n"
                         "    return who\n")  # fmt: skip
    worker = worker_factory()
    task = task_create(plugin=plugin, params={"who": "there"}, user=alice)
    wait_for_status(task, TaskStatus.SUCCESS, TaskStatus.FAILED)
    assert task.status == TaskStatus.SUCCESS, task.error
    assert task.result == "there"
    assert task.worker == worker.hostname
    assert TaskLog.objects.filter(task=task, message="hi there").exists()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL sessions are visible")
def test_a_worker_keeps_its_database_connection_from_one_run_to_the_next(
    worker_factory, make_plugin
):
    # Celery's Django fixup would close it around every task: a new connection per run.
    plugin = make_plugin("quick", "def run():\n    print('done')\n")
    worker_factory()

    def worker_sessions() -> set[tuple]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pid, backend_start FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            return set(cursor.fetchall())

    first = task_create(plugin=plugin, params={}, user=None)
    wait_for_status(first, TaskStatus.SUCCESS)
    after_first = worker_sessions()
    assert after_first, "the worker holds no connection between runs"
    for _ in range(3):
        task = task_create(plugin=plugin, params={}, user=None)
        wait_for_status(task, TaskStatus.SUCCESS)
    assert after_first <= worker_sessions()


def test_a_run_whose_message_redis_lost_runs_once_the_reaper_queued_it_again(
    worker_factory, make_plugin, redis_client, settings
):
    plugin = make_plugin("lost-message", "def run():\n    print('ran')\n")
    task = task_create(plugin=plugin, params={}, user=None)
    redis_client.delete("celery")  # Redis restarted without persistence before any worker
    Task.objects.filter(pk=task.pk).update(
        created_at=timezone.now() - timedelta(seconds=settings.TASK_REQUEUE_AFTER_SECONDS + 5)
    )
    out = io.StringIO()
    call_command("reap_tasks", stdout=out)
    assert f"requeued {task.pk}" in out.getvalue()
    worker_factory()
    wait_for_status(task, TaskStatus.SUCCESS, TaskStatus.FAILED)
    assert task.status == TaskStatus.SUCCESS, task.error
    assert task.attempt == 1
    assert TaskLog.objects.filter(task=task, source="stdout", message="ran").count() == 1


def test_a_duplicate_message_is_a_no_op_on_a_real_worker(worker_factory, make_plugin):
    plugin = make_plugin("count", "def run():\n    print('ran once')\n")
    worker_factory()
    task = Task.objects.create(plugin=plugin)
    run_task.apply_async(args=[str(task.pk)])
    run_task.apply_async(args=[str(task.pk)])
    wait_for_status(task, TaskStatus.SUCCESS)
    time.sleep(1.0)  # give the second delivery time to arrive and be handled
    task.refresh_from_db()
    assert task.attempt == 1
    assert TaskLog.objects.filter(task=task, message="ran once").count() == 1
    assert TaskLog.objects.filter(task=task, message="finished: SUCCESS").count() == 1


def test_cancel_reaches_a_plugin_on_a_real_worker(worker_factory, make_plugin):
    plugin = make_plugin("slow", SLOW)
    worker_factory(extra_env={"TASK_CANCEL_GRACE_SECONDS": "2"})
    task = task_create(plugin=plugin, params={}, user=None)
    wait_for(lambda: TaskLog.objects.filter(task=task, message="step 3").exists())
    task_cancel(task=task)
    wait_for_status(task, TaskStatus.CANCELLED, TaskStatus.FAILED, TaskStatus.SUCCESS)
    assert task.status == TaskStatus.CANCELLED
    assert (task.finished_at - task.cancel_requested_at).total_seconds() < 4


def test_a_killed_worker_leaves_its_task_failed_worker_lost_and_a_new_worker_works(
    worker_factory, beat_factory, make_plugin
):
    plugin = make_plugin("slow", SLOW)
    env = {"TASK_HEARTBEAT_SECONDS": "1", "TASK_LOST_AFTER_SECONDS": "3",
           "TASK_REAP_INTERVAL_SECONDS": "1"}  # fmt: skip
    worker = worker_factory(extra_env=env)
    beat_factory(extra_env=env)  # the reaper runs there: no worker is left to run it
    task = task_create(plugin=plugin, params={}, user=None)
    wait_for(lambda: TaskLog.objects.filter(task=task, message="step 5").exists())
    killed_at = time.monotonic()
    worker.kill()
    stored = TaskLog.objects.filter(task=task).count()

    wait_for_status(task, TaskStatus.FAILED, TaskStatus.SUCCESS, TaskStatus.CANCELLED, timeout=120)
    assert task.status == TaskStatus.FAILED
    assert task.error.startswith("worker lost")
    assert time.monotonic() - killed_at < 120
    time.sleep(1)
    assert TaskLog.objects.filter(task=task).count() == stored  # the plugin died with it

    # A new worker serves new runs; the old run stays as the reaper left it, even if its
    # message comes back (acks_late + reject_on_worker_lost).
    worker_factory(extra_env=env)
    again = task_create(plugin=make_plugin("quick", "def run():\n    return 1\n"), params={},
                        user=None)  # fmt: skip
    wait_for_status(again, TaskStatus.SUCCESS, TaskStatus.FAILED)
    assert again.status == TaskStatus.SUCCESS
    run_task.apply_async(args=[str(task.pk)])  # a redelivery of the lost run
    time.sleep(1)
    task.refresh_from_db()
    assert task.status == TaskStatus.FAILED and task.attempt == 1
