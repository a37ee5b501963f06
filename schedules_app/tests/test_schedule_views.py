"""The schedule pages: list + HTMX toggle, create/edit with the plugin's generated form,
the timing preview, and the plugin page's schedules section."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from schedules_app.models import Schedule
from schedules_app.services import schedule_create, schedule_fire

pytestmark = pytest.mark.django_db


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _form(**overrides) -> dict:
    data = {
        "kind": "cron", "cron": "0 2 * * 1-5", "timezone": "Europe/Berlin",
        "interval_seconds": "", "run_at": "", "enabled": "on", "overlap": "skip",
        "param-name": "world", "param-times": "2",
    }  # fmt: skip
    data.update(overrides)
    return data


@pytest.fixture
def alices_schedule(greet, alice):
    return schedule_create(plugin=greet, owner=alice, params={"name": "a"}, interval_seconds=60)


def test_the_list_shows_next_run_last_run_status_and_why_it_is_not_firing(
    alices_schedule, greet, alice
):
    schedule_fire(schedule_id=alices_schedule.pk, now=timezone.now() + timedelta(seconds=61))
    greet.is_active = False
    greet.save()
    response = _client(alice).get("/schedules/")
    body = response.content.decode()
    assert response.status_code == 200
    assert "Every 1 minute" in body
    assert 'class="badge st-PENDING"' in body
    assert "Not firing: plugin inactive" in body
    assert f"/schedules/{alices_schedule.pk}/edit/" in body


def test_others_see_only_what_they_may(alices_schedule, bob, charlie):
    assert "Every 1 minute" not in _client(charlie).get("/schedules/").content.decode()
    body = _client(bob).get("/schedules/").content.decode()  # view_all_tasks: sees, cannot edit
    assert "Every 1 minute" in body
    assert f"/schedules/{alices_schedule.pk}/edit/" not in body
    assert _client(bob).get(f"/schedules/{alices_schedule.pk}/edit/").status_code == 403
    assert _client(charlie).get(f"/schedules/{alices_schedule.pk}/edit/").status_code == 404
    assert _client(charlie).post(f"/schedules/{alices_schedule.pk}/toggle/").status_code == 404


def test_the_create_form_reuses_the_plugins_generated_fields(greet, alice):
    body = _client(alice).get("/schedules/new/?plugin=greet").content.decode()
    assert 'name="param-name"' in body and 'name="param-times"' in body
    assert 'name="cron"' in body and 'hx-get="/schedules/preview/"' in body


def test_without_a_plugin_the_create_page_asks_for_one(greet, alice):
    body = _client(alice).get("/schedules/new/").content.decode()
    assert "/schedules/new/?plugin=greet" in body


def test_creating_a_schedule_saves_it_and_its_periodic_task(greet, alice):
    response = _client(alice).post("/schedules/new/?plugin=greet", _form())
    assert response.status_code == 302, response.content.decode()
    schedule = Schedule.objects.get()
    assert (schedule.cron, schedule.timezone, schedule.owner) == (
        "0 2 * * 1-5",
        "Europe/Berlin",
        alice,
    )
    assert schedule.params == {"name": "world", "times": 2}
    assert PeriodicTask.objects.get(pk=schedule.periodic_task_id).crontab.hour == "2"


def test_a_one_off_time_is_read_in_the_chosen_timezone(greet, alice):
    when = (timezone.now() + timedelta(days=2)).astimezone(timezone.get_fixed_timezone(0))
    local = when.strftime("%Y-%m-%dT%H:%M")
    response = _client(alice).post(
        "/schedules/new/?plugin=greet",
        _form(kind="once", cron="", run_at=local, timezone="Asia/Tokyo"),
    )
    assert response.status_code == 302, response.content.decode()
    schedule = Schedule.objects.get()
    assert schedule.run_at == when.replace(second=0, microsecond=0) - timedelta(hours=9)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"cron": "0 25 * * *"}, "Invalid hour field"),
        ({"timezone": "Europe/Atlantis"}, "Unknown timezone"),
        ({"kind": "interval", "interval_seconds": "0"}, "more than 0"),
        ({"kind": "interval", "interval_seconds": ""}, "Enter a value for the timing you chose"),
        ({"param-name": ""}, "This field is required"),
        ({"param-times": "0"}, "minimum of 1"),
        ({"param-times": "many"}, "Enter a whole number"),
    ],
)
def test_bad_input_comes_back_with_errors_and_saves_nothing(greet, alice, overrides, message):
    response = _client(alice).post("/schedules/new/?plugin=greet", _form(**overrides))
    assert response.status_code == 422
    assert message in response.content.decode()
    assert Schedule.objects.count() == 0
    assert not PeriodicTask.objects.filter(name__startswith="octopus-schedule-").exists()


def test_editing_switches_the_timing(alices_schedule, alice):
    url = f"/schedules/{alices_schedule.pk}/edit/"
    assert 'value="60"' in _client(alice).get(url).content.decode()
    response = _client(alice).post(url, _form(cron="*/15 * * * *", timezone="UTC"))
    assert response.status_code == 302
    alices_schedule.refresh_from_db()
    assert (alices_schedule.cron, alices_schedule.interval_seconds) == ("*/15 * * * *", None)


def test_a_bad_edit_changes_nothing(alices_schedule, alice):
    url = f"/schedules/{alices_schedule.pk}/edit/"
    response = _client(alice).post(url, _form(cron="bad cron here x y"))
    assert response.status_code == 422
    alices_schedule.refresh_from_db()
    assert alices_schedule.interval_seconds == 60 and alices_schedule.cron == ""


def test_the_htmx_toggle_returns_the_row_and_disables_beat(alices_schedule, alice):
    response = _client(alice).post(
        f"/schedules/{alices_schedule.pk}/toggle/", HTTP_HX_REQUEST="true"
    )
    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith(f'<tr id="schedule-{alices_schedule.pk}-row">')
    assert ">Disabled<" in body
    assert not PeriodicTask.objects.get(pk=alices_schedule.periodic_task_id).enabled


def test_the_toggle_needs_the_csrf_token(alices_schedule, alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    assert client.post(f"/schedules/{alices_schedule.pk}/toggle/").status_code == 403
    assert Schedule.objects.get().enabled


def test_deleting_from_the_edit_page(alices_schedule, alice):
    response = _client(alice).post(f"/schedules/{alices_schedule.pk}/delete/")
    assert response.status_code == 302
    assert not Schedule.objects.exists()


def test_the_preview_describes_the_cron_and_lists_five_times_in_its_timezone(alice):
    response = _client(alice).get(
        "/schedules/preview/", {"kind": "cron", "cron": "0 2 * * 1-5", "timezone": "Europe/Berlin"}
    )
    body = response.content.decode()
    assert "At 02:00, Monday through Friday (Europe/Berlin)" in body
    assert body.count("<li>") == 5
    assert body.count(" 02:00:00 ") == 5


def test_the_preview_explains_a_bad_cron(alice):
    response = _client(alice).get(
        "/schedules/preview/", {"kind": "cron", "cron": "0 2 * *", "timezone": "UTC"}
    )
    assert "5 fields" in response.content.decode()


def test_the_plugin_page_lists_its_schedules(alices_schedule, alice):
    body = _client(alice).get("/plugins/greet/").content.decode()
    assert 'id="plugin-greet-schedules"' in body
    assert "Every 1 minute" in body
    assert "/schedules/new/?plugin=greet" in body
