"""`/api/v1/schedules` with a Bearer token: list, create, patch, delete, and bad input."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from accounts_app.models import ApiToken
from schedules_app.models import Schedule
from schedules_app.services import schedule_create, schedule_fire

pytestmark = pytest.mark.django_db

SHAPE = {
    "id", "plugin", "params", "cron", "timezone", "interval_seconds", "run_at", "enabled",
    "overlap", "next_run_at", "last_task",
}  # fmt: skip


class Api:
    def __init__(self, user):
        _, raw = ApiToken.issue(user=user)
        self.client = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")

    def get(self, path, **params):
        return self.client.get(f"/api/v1/schedules{path}", params)

    def post(self, body):
        return self.client.post("/api/v1/schedules", body, content_type="application/json")

    def patch(self, path, body):
        return self.client.patch(f"/api/v1/schedules{path}", body, content_type="application/json")

    def delete(self, path):
        return self.client.delete(f"/api/v1/schedules{path}")


@pytest.fixture
def alices_schedule(greet, alice):
    return schedule_create(plugin=greet, owner=alice, params={"name": "a"}, interval_seconds=30)


def test_creating_a_cron_schedule_answers_201_with_the_documented_shape(greet, alice):
    response = Api(alice).post(
        {"plugin": "greet", "params": {"name": "w"}, "cron": "0 2 * * 1-5",
         "timezone": "Europe/Berlin"}
    )  # fmt: skip
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) >= SHAPE
    assert body["cron"] == "0 2 * * 1-5" and body["interval_seconds"] is None
    assert body["run_at"] is None and body["overlap"] == "skip" and body["enabled"] is True
    assert body["next_run_at"].endswith(("T01:00:00Z", "T00:00:00Z"))  # 02:00 Berlin in UTC
    assert body["last_task"] is None
    assert Schedule.objects.get().pk == body["id"]


def test_the_list_is_total_and_items_with_the_last_task(alices_schedule, alice):
    fire = schedule_fire(schedule_id=alices_schedule.pk, now=timezone.now() + timedelta(seconds=31))
    response = Api(alice).get("")
    assert response.status_code == 200
    body = response.json()
    assert body["total"] == 1
    (item,) = body["items"]
    assert item["interval_seconds"] == 30 and item["cron"] is None
    assert item["last_task"] == {
        "id": str(fire.task_id), "status": "PENDING", "created_at": item["last_task"]["created_at"]
    }  # fmt: skip


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ({"cron": "*/0 * * * *"}, "cron", ""),
        ({"cron": "0 2 * * *", "timezone": "Moon/Base"}, "timezone", "Unknown timezone"),
        ({"interval_seconds": 0}, "interval_seconds", "more than 0"),
        ({"interval_seconds": -1}, "interval_seconds", "more than 0"),
        ({}, "", "exactly one"),
        ({"cron": "* * * * *", "interval_seconds": 5}, "", "exactly one"),
        ({"interval_seconds": 5, "params": {"name": 7}}, "params.name", "not of type"),
        ({"interval_seconds": 5, "params": {}}, "params.name", "required"),
        ({"interval_seconds": 5, "overlap": "maybe"}, "overlap", "Must be one of"),
    ],
)
def test_bad_input_is_422_per_field_and_saves_nothing(greet, alice, body, field, fragment):
    payload = {"plugin": "greet", "params": {"name": "w"}, **body}
    response = Api(alice).post(payload)
    assert response.status_code == 422, response.content
    errors = response.json()["errors"]
    assert field in errors, errors
    assert any(fragment in m for m in errors[field])
    assert Schedule.objects.count() == 0
    assert not PeriodicTask.objects.filter(name__startswith="octopus-schedule-").exists()


def test_an_unknown_plugin_is_404_and_no_permission_is_403(greet, alice, charlie):
    assert Api(alice).post({"plugin": "nope", "interval_seconds": 5}).status_code == 404
    response = Api(charlie).post(
        {"plugin": "greet", "params": {"name": "x"}, "interval_seconds": 5}
    )
    assert response.status_code == 403
    assert Schedule.objects.count() == 0


def test_patch_disables_and_switches_timing(alices_schedule, alice):
    api = Api(alice)
    response = api.patch(f"/{alices_schedule.pk}", {"enabled": False})
    assert response.status_code == 200 and response.json()["enabled"] is False
    assert response.json()["next_run_at"] is None
    assert not PeriodicTask.objects.get(pk=alices_schedule.periodic_task_id).enabled
    response = api.patch(f"/{alices_schedule.pk}", {"cron": "15 * * * *"})
    assert response.status_code == 200
    assert (response.json()["cron"], response.json()["interval_seconds"]) == ("15 * * * *", None)


def test_a_bad_patch_is_422_and_changes_nothing(alices_schedule, alice):
    response = Api(alice).patch(f"/{alices_schedule.pk}", {"cron": "60 * * * *", "timezone": "X"})
    assert response.status_code == 422
    assert {"cron", "timezone"} <= set(response.json()["errors"])
    alices_schedule.refresh_from_db()
    assert (alices_schedule.interval_seconds, alices_schedule.cron) == (30, "")


def test_other_users_get_404_or_403(alices_schedule, bob, charlie):
    assert Api(charlie).get(f"/{alices_schedule.pk}").status_code == 404
    assert Api(charlie).patch(f"/{alices_schedule.pk}", {"enabled": False}).status_code == 404
    assert Api(bob).get(f"/{alices_schedule.pk}").status_code == 200
    assert Api(bob).delete(f"/{alices_schedule.pk}").status_code == 403
    assert Schedule.objects.filter(pk=alices_schedule.pk, enabled=True).exists()


def test_delete_removes_the_schedule_and_its_periodic_task(alices_schedule, alice):
    assert Api(alice).delete(f"/{alices_schedule.pk}").status_code == 204
    assert not Schedule.objects.exists()
    assert not PeriodicTask.objects.filter(name__startswith="octopus-schedule-").exists()


def test_without_credentials_it_is_401(alices_schedule):
    assert Client().get("/api/v1/schedules").status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        {"plugin": "\x00", "params": {}},
        {"plugin": "x", "params": {"a": "\x00"}, "interval_seconds": 60},
        {"plugin": "x", "cron": "* * * * *", "timezone": "UTC\x00"},
    ],
)
def test_it_refuses_nul_characters_with_a_422_and_saves_nothing(client, alice, body):
    from schedules_app.models import Schedule

    client.force_login(alice)
    response = client.post("/api/v1/schedules", body, content_type="application/json")
    assert response.status_code == 422, response.content
    assert "detail" in response.json()
    assert Schedule.objects.count() == 0
