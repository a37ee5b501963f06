from __future__ import annotations

import uuid

import pytest
from django.test import Client

from tasks_app.models import Task, TaskStatus
from tasks_app.tests._api_support import make_plugin, make_task

pytestmark = pytest.mark.django_db

TASK_KEYS = {"id", "plugin", "status", "params", "result", "error", "user", "created_at",
             "started_at", "finished_at", "progress", "schedule"}  # fmt: skip


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_a_task_has_the_documented_shape(alice):
    task = make_task(make_plugin(), alice, progress_done=3, progress_total=10,
                     progress_message="copying", result={"ok": True})  # fmt: skip
    body = _client(alice).get(f"/api/v1/tasks/{task.id}").json()
    assert set(body) >= TASK_KEYS
    assert body["id"] == str(task.id)
    assert body["plugin"] == "hello"
    assert body["user"] == "alice"
    assert body["result"] == {"ok": True}
    assert body["progress"] == {"done": 3.0, "total": 10.0, "message": "copying", "percent": 30.0}


def test_users_see_only_their_own_tasks(alice, charlie):
    plugin = make_plugin()
    mine = make_task(plugin, alice)
    make_task(plugin, charlie)
    body = _client(alice).get("/api/v1/tasks").json()
    assert body["total"] == 1
    assert [i["id"] for i in body["items"]] == [str(mine.id)]


def test_another_users_task_is_404_like_an_unknown_one(alice, charlie):
    task = make_task(make_plugin(), alice)
    client = _client(charlie)
    for suffix in ("", "/logs", "/logs/stats", "/logs/sources", "/logs/download"):
        other = client.get(f"/api/v1/tasks/{task.id}{suffix}")
        unknown = client.get(f"/api/v1/tasks/{uuid.uuid4()}{suffix}")
        assert other.status_code == unknown.status_code == 404, suffix
    assert client.post(f"/api/v1/tasks/{task.id}/cancel").status_code == 404


def test_view_all_tasks_sees_everyones_tasks_and_filters_them(alice, bob, charlie):
    plugin = make_plugin()
    other = make_plugin("other")
    make_task(plugin, alice, status=TaskStatus.FAILED)
    make_task(other, charlie)
    make_task(plugin, bob)
    client = _client(bob)
    assert client.get("/api/v1/tasks").json()["total"] == 3
    assert client.get("/api/v1/tasks", {"user": "alice"}).json()["items"][0]["user"] == "alice"
    assert client.get("/api/v1/tasks", {"status": "FAILED"}).json()["total"] == 1
    assert client.get("/api/v1/tasks", {"plugin": "other"}).json()["total"] == 1
    page = client.get("/api/v1/tasks", {"limit": 2, "offset": 0}).json()
    assert page["total"] == 3 and len(page["items"]) == 2


def test_task_list_rejects_bad_filters_readably(bob):
    response = _client(bob).get("/api/v1/tasks", {"status": "DONE", "offset": -1, "limit": 5000})
    assert response.status_code == 422
    assert set(response.json()["errors"]) == {"status", "offset", "limit"}


def test_a_malformed_task_id_is_a_readable_422(alice):
    response = _client(alice).get("/api/v1/tasks/not-a-uuid")
    assert response.status_code == 422
    assert "UUID" in response.json()["errors"]["task_id"][0]


def test_starting_a_run_needs_the_run_permission(charlie):
    make_plugin()
    response = _client(charlie).post(
        "/api/v1/tasks",
        {"plugin": "hello", "params": {"name": "x"}},
        content_type="application/json",
    )
    assert response.status_code == 403
    assert Task.objects.count() == 0


def test_starting_an_unknown_plugin_is_404(alice):
    response = _client(alice).post(
        "/api/v1/tasks", {"plugin": "nope", "params": {}}, content_type="application/json"
    )
    assert response.status_code == 404
    assert Task.objects.count() == 0


@pytest.mark.parametrize(
    "body, field",
    [({"params": {}}, "plugin"), ({"plugin": "hello", "params": [1]}, "params"),
     ({"plugin": "", "params": {}}, "plugin")],
)  # fmt: skip
def test_a_malformed_create_body_is_422_per_field(alice, body, field):
    make_plugin()
    response = _client(alice).post("/api/v1/tasks", body, content_type="application/json")
    assert response.status_code == 422
    assert field in response.json()["errors"]
    assert Task.objects.count() == 0


def test_a_create_body_that_is_not_json_is_a_readable_4xx(alice):
    response = _client(alice).post("/api/v1/tasks", "{not json", content_type="application/json")
    assert 400 <= response.status_code < 500
    assert response.json()["detail"]
    assert Task.objects.count() == 0


def test_cancelling_a_finished_task_is_409_and_changes_nothing(alice):
    task = make_task(make_plugin(), alice, status=TaskStatus.SUCCESS)
    response = _client(alice).post(f"/api/v1/tasks/{task.id}/cancel")
    assert response.status_code == 409
    task.refresh_from_db()
    assert task.status == TaskStatus.SUCCESS
