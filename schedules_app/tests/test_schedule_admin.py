"""The schedule admin: the list, a schedule's fires, and the bulk enable/disable action."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from schedules_app.services import schedule_create, schedule_fire

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_(admin_user_obj) -> Client:
    client = Client()
    client.force_login(admin_user_obj)
    return client


def test_the_admin_lists_schedules_and_shows_their_fires(greet, alice, admin_client_):
    schedule = schedule_create(plugin=greet, owner=alice, params={"name": "a"}, interval_seconds=9)
    schedule_fire(schedule_id=schedule.pk, now=timezone.now() + timedelta(seconds=10))
    assert "every 9s" in admin_client_.get("/admin/schedules_app/schedule/").content.decode()
    page = admin_client_.get(f"/admin/schedules_app/schedule/{schedule.pk}/change/")
    assert page.status_code == 200
    assert "Run created" in page.content.decode()


def test_the_disable_action_goes_through_the_service(greet, alice, admin_client_):
    schedule = schedule_create(plugin=greet, owner=alice, params={"name": "a"}, interval_seconds=9)
    response = admin_client_.post(
        "/admin/schedules_app/schedule/",
        {"action": "disable_schedules", "_selected_action": [schedule.pk]},
    )
    assert response.status_code == 302
    schedule.refresh_from_db()
    assert not schedule.enabled
    assert not PeriodicTask.objects.get(pk=schedule.periodic_task_id).enabled
