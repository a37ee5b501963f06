from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from plugins_app.models import Plugin, PluginVersion
from tasks_app.models import Task, TaskStatus
from tasks_app.services import (
    ParamsInvalid,
    PluginNotRunnable,
    _enqueue,
    params_validate,
    parse_age,
    task_cancel,
    task_create,
    tasks_reap_lost,
    tasks_requeue_lost,
)

pytestmark = pytest.mark.django_db

SCHEMA = {
    "type": "object",
    "properties": {
        "source": {"type": "string"},
        "keep": {"type": "integer", "default": 5},
        "mode": {"enum": ["fast", "best"], "default": "fast"},
    },
    "required": ["source"],
    "additionalProperties": False,
}


@pytest.fixture
def backup(make_plugin):
    return make_plugin("backup", "def run(context, source, keep=5, mode='fast'):\n    pass\n",
                       schema=SCHEMA)  # fmt: skip


def queued_task_ids(redis_client) -> list[str]:
    """Task ids of run_task messages waiting in the broker's default queue (read, not
    consumed)."""
    ids = []
    for raw in redis_client.lrange("celery", 0, -1):
        message = json.loads(raw)
        if message["headers"]["task"] == "tasks_app.run_task":
            ids.append(message["headers"]["argsrepr"].strip("[]()',\" "))
    return ids


def test_it_saves_a_pending_task_with_defaults_and_enqueues_it_after_commit(
    backup, alice, redis_client, django_capture_on_commit_callbacks
):
    redis_client.delete("celery")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        task = task_create(plugin=backup, params={"source": "/srv"}, user=alice)
        assert queued_task_ids(redis_client) == []  # nothing before the commit
    assert len(callbacks) == 1
    task.refresh_from_db()
    assert task.status == TaskStatus.PENDING
    assert task.params == {"source": "/srv", "keep": 5, "mode": "fast"}
    assert task.plugin_sha256 == backup.sha256
    assert task.user == alice
    assert queued_task_ids(redis_client) == [str(task.pk)]
    redis_client.delete("celery")


@pytest.mark.parametrize(
    ("params", "errors"),
    [
        ({}, {"source": ["This field is required."]}),
        ({"source": "/x", "keep": "many"}, {"keep": ["'many' is not of type 'integer'"]}),
        ({"source": "/x", "mode": "slow"}, {"mode": ["'slow' is not one of ['fast', 'best']"]}),
        ({"source": "/x", "colour": "red"}, {"colour": ["Unknown parameter."]}),
        (["not", "a", "dict"], {"": ["Parameters must be a JSON object."]}),
    ],
)
def test_it_refuses_bad_params_naming_the_field_and_saves_nothing(
    backup, alice, params, errors, redis_client
):
    redis_client.delete("celery")
    with pytest.raises(ParamsInvalid) as caught:
        task_create(plugin=backup, params=params, user=alice)
    assert caught.value.errors == errors
    assert Task.objects.count() == 0
    assert queued_task_ids(redis_client) == []


def test_a_broken_schema_is_reported_as_params_invalid():
    with pytest.raises(ParamsInvalid) as caught:
        params_validate({"type": "no-such-type"}, {})
    assert "schema is invalid" in caught.value.errors[""][0]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"is_active": False}, "inactive"),
        ({"is_missing": True}, "missing"),
        ({"discovery_error": "line 3: invalid syntax"}, "error"),
    ],
)
def test_it_refuses_a_plugin_that_cannot_run(backup, alice, change, reason):
    Plugin.objects.filter(pk=backup.pk).update(**change)
    with pytest.raises(PluginNotRunnable) as caught:
        task_create(plugin=Plugin.objects.get(pk=backup.pk), params={"source": "/x"}, user=alice)
    assert caught.value.reason == reason
    assert backup.pk in str(caught.value)
    assert Task.objects.count() == 0


def test_a_run_records_the_registered_version_of_its_plugin(backup, alice):
    old = PluginVersion.objects.create(plugin=backup, sha256="0" * 64, md5="0" * 32, source="")
    current = PluginVersion.objects.create(
        plugin=backup, sha256=backup.sha256, md5=backup.md5, version="1.2", source="x"
    )
    task = task_create(plugin=backup, params={"source": "/x"}, user=alice)
    assert task.plugin_version == current != old
    assert Task.objects.get(pk=task.pk).plugin_version_id == current.pk


def test_a_plugin_without_a_stored_version_still_runs_with_none_recorded(backup, alice):
    task = task_create(plugin=backup, params={"source": "/x"}, user=alice)
    assert task.plugin_version is None
    assert Task.objects.get(pk=task.pk).plugin_sha256 == backup.sha256


def test_cancelling_a_pending_task_cancels_it_at_once(backup, alice):
    task = Task.objects.create(plugin=backup, user=alice)
    task = task_cancel(task=task, user=alice)
    assert task.status == TaskStatus.CANCELLED
    assert task.finished_at is not None
    assert task.error == "cancelled before it started by alice"
    # The queued message then finds nothing to claim.
    assert task.mark_running(worker="late") is False


def test_cancelling_a_running_task_asks_the_worker(backup, alice):
    task = Task.objects.create(plugin=backup, user=alice)
    assert task.mark_running(worker="w")
    task = task_cancel(task=task)
    assert task.status == TaskStatus.RUNNING
    first = task.cancel_requested_at
    assert first is not None
    assert task_cancel(task=task).cancel_requested_at == first  # asking twice changes nothing


def test_cancelling_a_finished_task_changes_nothing(backup):
    task = Task.objects.create(plugin=backup)
    task.mark_running()
    task.mark_finished(TaskStatus.SUCCESS, result={"ok": True})
    task = task_cancel(task=task)
    assert task.status == TaskStatus.SUCCESS
    assert task.cancel_requested_at is None


def test_the_reaper_fails_running_tasks_with_a_stale_heartbeat_only(backup):
    lost = Task.objects.create(plugin=backup)
    alive = Task.objects.create(plugin=backup)
    for task in (lost, alive):
        task.mark_running(worker="w1@host")
    Task.objects.filter(pk=lost.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=settings.TASK_LOST_AFTER_SECONDS + 5)
    )
    assert tasks_reap_lost() == [str(lost.pk)]
    lost.refresh_from_db()
    alive.refresh_from_db()
    assert lost.status == TaskStatus.FAILED
    assert lost.error.startswith("worker lost: no heartbeat from w1@host since")
    assert alive.status == TaskStatus.RUNNING
    assert tasks_reap_lost() == []  # nothing left to reap; the first verdict stands


@pytest.mark.parametrize(
    ("text", "expected"),
    [("30d", timedelta(days=30)), ("12h", timedelta(hours=12)), ("2w", timedelta(weeks=2))],
)
def test_ages_are_parsed(text, expected):
    assert parse_age(text) == expected


@pytest.mark.parametrize("text", ["", "30", "thirty days", "0d", "-1d", "5y"])
def test_bad_ages_are_refused_clearly(text):
    with pytest.raises(ValueError, match="age"):
        parse_age(text)


def created_ago(task: Task, seconds: int) -> None:
    Task.objects.filter(pk=task.pk).update(created_at=timezone.now() - timedelta(seconds=seconds))


def test_a_pending_run_whose_message_is_gone_is_queued_again_once(backup, redis_client):
    redis_client.delete("celery")  # a Redis that restarted empty: no message for `lost`
    lost, waiting, young = (Task.objects.create(plugin=backup) for _ in range(3))
    _enqueue(waiting.pk)  # still waiting for a worker in a long queue
    for task in (lost, waiting):
        created_ago(task, settings.TASK_REQUEUE_AFTER_SECONDS + 5)
    assert queued_task_ids(redis_client) == [str(waiting.pk)]

    assert tasks_requeue_lost() == [str(lost.pk)]  # not `waiting` (queued), not `young`
    assert sorted(queued_task_ids(redis_client)) == sorted([str(waiting.pk), str(lost.pk)])
    assert tasks_requeue_lost() == []  # its message is there now
    assert Task.objects.get(pk=lost.pk).status == TaskStatus.PENDING
    assert Task.objects.get(pk=young.pk).status == TaskStatus.PENDING
    redis_client.delete("celery")


def test_runs_that_are_not_pending_are_never_queued_again(backup, redis_client):
    redis_client.delete("celery")
    for status in (TaskStatus.RUNNING, TaskStatus.SUCCESS, TaskStatus.CANCELLED):
        task = Task.objects.create(plugin=backup, status=status)
        created_ago(task, settings.TASK_REQUEUE_AFTER_SECONDS + 5)
    assert tasks_requeue_lost() == []
    assert queued_task_ids(redis_client) == []
