from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from tasks_app.models import Task, TaskLog, TaskStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def history(make_plugin):
    plugin = make_plugin("old", "def run():\n    pass\n")
    old = timezone.now() - timedelta(days=40)

    def task(status, created_at, lines=0):
        t = Task.objects.create(plugin=plugin, status=status, created_at=created_at)
        TaskLog.objects.bulk_create(
            TaskLog(task=t, seq=i + 1, timestamp=created_at, message=f"l{i}") for i in range(lines)
        )
        return t

    return {
        "old_ok": task(TaskStatus.SUCCESS, old, lines=3),
        "old_failed": task(TaskStatus.FAILED, old, lines=2),
        "old_running": task(TaskStatus.RUNNING, old, lines=1),
        "new_ok": task(TaskStatus.SUCCESS, timezone.now(), lines=1),
    }


def cleanup(*args) -> str:
    out = io.StringIO()
    call_command("cleanup_tasks", *args, stdout=out)
    return out.getvalue().strip()


def test_it_deletes_old_finished_tasks_and_their_logs_only(history):
    assert cleanup("--older-than", "30d", "--batch-size", "1") == (
        "deleted 2 task(s) and 5 log line(s)"
    )
    left = set(Task.objects.values_list("pk", flat=True))
    assert left == {history["old_running"].pk, history["new_ok"].pk}
    assert TaskLog.objects.count() == 2


def test_a_dry_run_counts_and_deletes_nothing(history):
    assert cleanup("--older-than", "30d", "--dry-run") == "would delete 2 task(s) and 5 log line(s)"
    assert Task.objects.count() == 4
    assert TaskLog.objects.count() == 7


def test_it_can_be_limited_to_a_status(history):
    assert cleanup("--older-than", "30d", "--status", "failed") == (
        "deleted 1 task(s) and 2 log line(s)"
    )
    assert not Task.objects.filter(pk=history["old_failed"].pk).exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--older-than", "soon"], "--older-than: 'soon' is not an age"),
        (["--older-than", "0d"], "must be more than zero"),
        (["--older-than", "30d", "--status", "RUNNING"], "cannot clean up tasks in status RUNNING"),
    ],
)
def test_bad_arguments_are_refused_and_nothing_is_deleted(history, args, message):
    with pytest.raises(CommandError, match=message):
        cleanup(*args)
    assert Task.objects.count() == 4


def test_the_daily_cleanup_is_a_beat_entry(settings):
    entries = {e["task"] for e in settings.CELERY_BEAT_SCHEDULE.values()}
    assert "tasks_app.cleanup_old_tasks" in entries


def test_reap_tasks_command_reports_what_it_failed(history):
    Task.objects.filter(pk=history["old_running"].pk).update(
        heartbeat_at=timezone.now() - timedelta(hours=1)
    )
    out = io.StringIO()
    call_command("reap_tasks", stdout=out)
    assert "reaped 1 task(s)\nrequeued 0 task(s)" in out.getvalue()
    assert Task.objects.get(pk=history["old_running"].pk).status == TaskStatus.FAILED
    with pytest.raises(CommandError, match="at least 1"):
        call_command("reap_tasks", "--lost-after", "0")
