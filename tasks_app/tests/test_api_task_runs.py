"""Starting, cancelling and re-running through the API: these go through the execution
services (tasks_app.services)."""

from __future__ import annotations

import pytest
from django.test import Client

from tasks_app.models import Task, TaskStatus
from tasks_app.tests._api_support import make_plugin, make_task

pytestmark = pytest.mark.django_db(transaction=True)


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _post(client, path, body=None):
    return client.post(path, body or {}, content_type="application/json")


def test_starting_a_run_answers_201_with_the_pending_task(alice):
    make_plugin()
    response = _post(_client(alice), "/api/v1/tasks", {"plugin": "hello", "params": {"name": "x"}})
    assert response.status_code == 201, response.content
    body = response.json()
    task = Task.objects.get()
    assert body["id"] == str(task.id)
    assert body["status"] == "PENDING"
    assert body["user"] == "alice"
    assert task.params == {"name": "x"}


def test_params_that_break_the_schema_are_422_per_field_and_start_nothing(alice):
    make_plugin()
    response = _post(_client(alice), "/api/v1/tasks", {"plugin": "hello", "params": {"times": "x"}})
    assert response.status_code == 422
    body = response.json()
    assert body["detail"]
    assert body["errors"]
    assert all(isinstance(v, list) and v for v in body["errors"].values())
    assert Task.objects.count() == 0


def test_an_inactive_plugin_is_409_and_starts_nothing(alice):
    make_plugin(is_active=False)
    response = _post(_client(alice), "/api/v1/tasks", {"plugin": "hello", "params": {"name": "x"}})
    assert response.status_code == 409
    assert "inactive" in response.json()["detail"]
    assert Task.objects.count() == 0


def test_cancelling_a_pending_task(alice):
    task = make_task(make_plugin(), alice, status=TaskStatus.PENDING)
    response = _post(_client(alice), f"/api/v1/tasks/{task.id}/cancel")
    assert response.status_code == 200, response.content
    task.refresh_from_db()
    assert response.json()["status"] == task.status == TaskStatus.CANCELLED


def test_rerun_starts_a_new_task_with_the_same_params(alice):
    old = make_task(make_plugin(), alice)
    response = _post(_client(alice), f"/api/v1/tasks/{old.id}/rerun")
    assert response.status_code == 201, response.content
    new = Task.objects.exclude(pk=old.pk).get()
    assert response.json()["id"] == str(new.id)
    assert new.params == old.params
