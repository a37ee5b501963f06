from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from plugins_app.models import Plugin
from tasks_app.models import LogLevel, Task, TaskLog, TaskStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def plugin():
    return Plugin.objects.create(id="demo", name="Demo", file_path="demo.py", is_active=True)


@pytest.fixture
def task(plugin, alice):
    return Task.objects.create(plugin=plugin, user=alice, params={"x": 1})


def test_it_refuses_a_status_outside_the_state_machine(task):
    with pytest.raises(IntegrityError), transaction.atomic():
        Task.objects.filter(pk=task.pk).update(status="EXPLODED")


def test_it_refuses_two_log_lines_with_the_same_seq(task):
    now = timezone.now()
    TaskLog.objects.create(task=task, seq=1, timestamp=now, message="first")
    with pytest.raises(IntegrityError), transaction.atomic():
        TaskLog.objects.create(task=task, seq=1, timestamp=now, message="again")


def test_it_refuses_an_unknown_log_level(task):
    with pytest.raises(IntegrityError), transaction.atomic():
        TaskLog.objects.create(task=task, seq=1, timestamp=timezone.now(), level=25, message="x")


def test_the_same_seq_is_fine_in_another_task(task, plugin):
    other = Task.objects.create(plugin=plugin)
    now = timezone.now()
    TaskLog.objects.create(task=task, seq=1, timestamp=now, message="a")
    TaskLog.objects.create(task=other, seq=1, timestamp=now, message="b")
    assert TaskLog.objects.filter(seq=1).count() == 2


def test_only_one_claim_of_a_pending_run_wins(task):
    first = Task.objects.get(pk=task.pk)
    duplicate = Task.objects.get(pk=task.pk)
    assert first.mark_running(worker="w1") is True
    assert duplicate.mark_running(worker="w2") is False
    task.refresh_from_db()
    assert task.status == TaskStatus.RUNNING
    assert task.worker == "w1"
    assert task.attempt == 1
    assert task.started_at is not None


def test_the_first_terminal_status_wins(task):
    task.mark_running(worker="w1")
    racer = Task.objects.get(pk=task.pk)
    assert task.mark_finished(TaskStatus.SUCCESS, result={"ok": True}) is True
    assert racer.mark_finished(TaskStatus.FAILED, error="worker lost") is False
    task.refresh_from_db()
    assert task.status == TaskStatus.SUCCESS
    assert task.result == {"ok": True}
    assert task.is_terminal
    assert task.duration is not None


def test_a_pending_run_cannot_finish_unless_asked(task):
    assert task.mark_finished(TaskStatus.SUCCESS) is False
    assert task.mark_finished(TaskStatus.CANCELLED, from_statuses=(TaskStatus.PENDING,)) is True
    assert Task.objects.get(pk=task.pk).status == TaskStatus.CANCELLED


def test_mark_finished_refuses_a_non_terminal_status(task):
    with pytest.raises(ValueError):
        task.mark_finished(TaskStatus.RUNNING)


def test_a_long_message_is_truncated_with_a_visible_marker():
    message = TaskLog.clean_message("a\x00b" + "x" * (TaskLog.MESSAGE_LIMIT + 10))
    assert "\x00" not in message
    assert message.startswith("abx")
    assert message.endswith("[truncated 12 characters]")  # the NUL byte is not counted


def test_log_levels_map_from_names_and_numbers():
    assert LogLevel.from_name("warn") == LogLevel.WARNING
    assert LogLevel.from_name("CRITICAL") == LogLevel.ERROR
    assert LogLevel.from_number(5) == LogLevel.DEBUG
    assert LogLevel.from_number(50) == LogLevel.ERROR
    with pytest.raises(ValueError):
        LogLevel.from_name("loud")
