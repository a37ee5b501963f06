"""schedule_create / update / delete / fire, with the clock passed in (`now=`)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import PermissionDenied
from django_celery_beat.models import PeriodicTask

from schedules_app.models import FireOutcome, Schedule, ScheduleFire
from schedules_app.services import (
    ScheduleInvalid,
    schedule_create,
    schedule_delete,
    schedule_fire,
    schedule_next_runs,
    schedule_update,
    timing_preview,
)
from tasks_app.models import Task, TaskStatus

pytestmark = pytest.mark.django_db

BERLIN = ZoneInfo("Europe/Berlin")
T0 = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)


def _octopus_periodic_tasks():
    return PeriodicTask.objects.filter(name__startswith="octopus-schedule-")


def _interval(greet, alice, seconds=10, **kwargs) -> Schedule:
    return schedule_create(
        plugin=greet, owner=alice, params={"name": "a"}, interval_seconds=seconds, now=T0, **kwargs
    )


# --- create ----------------------------------------------------------------------------------


def test_a_cron_schedule_is_stored_as_a_periodic_task_with_a_timezone_aware_crontab(greet, alice):
    schedule = schedule_create(
        plugin=greet, owner=alice, params={"name": "a"}, cron="0 2 * * 1-5",
        timezone_name="Europe/Berlin", now=T0,
    )  # fmt: skip
    periodic = PeriodicTask.objects.get(pk=schedule.periodic_task_id)
    assert periodic.task == "schedules_app.fire_schedule"
    assert periodic.kwargs == f'{{"schedule_id": {schedule.pk}}}'
    assert periodic.enabled
    crontab = periodic.crontab
    assert (crontab.minute, crontab.hour, crontab.day_of_week) == ("0", "2", "1-5")
    assert str(crontab.timezone) == "Europe/Berlin"
    assert periodic.interval is None and periodic.clocked is None


def test_an_interval_schedule_is_stored_with_an_interval_in_seconds(greet, alice):
    schedule = _interval(greet, alice, seconds=10)
    periodic = schedule.periodic_task
    assert (periodic.interval.every, periodic.interval.period) == (10, "seconds")
    assert periodic.crontab is None


def test_a_one_off_schedule_is_a_clocked_one_off_periodic_task(greet, alice):
    when = T0 + timedelta(hours=1)
    schedule = schedule_create(plugin=greet, owner=alice, params={"name": "a"}, run_at=when, now=T0)
    assert schedule.periodic_task.one_off
    assert schedule.periodic_task.clocked.clocked_time == when


@pytest.mark.parametrize(
    ("timing", "field", "fragment"),
    [
        ({"cron": "61 * * * *"}, "cron", "Invalid minute field '61'"),
        ({"cron": "every day"}, "cron", "5 fields"),
        ({"cron": "0 0 31 2 *"}, "cron", "never occurs"),
        ({"cron": "0 2 * * *", "timezone_name": "Mars/Olympus"}, "timezone", "Unknown timezone"),
        ({"interval_seconds": 0}, "interval_seconds", "more than 0"),
        ({"interval_seconds": -5}, "interval_seconds", "more than 0"),
        ({}, "", "exactly one"),
        ({"cron": "* * * * *", "interval_seconds": 10}, "", "exactly one"),
        ({"run_at": T0 - timedelta(minutes=1)}, "run_at", "future"),
    ],
)
def test_it_rejects_a_bad_timing_with_a_clear_error_and_saves_nothing(
    greet, alice, timing, field, fragment
):
    with pytest.raises(ScheduleInvalid) as caught:
        schedule_create(plugin=greet, owner=alice, params={"name": "a"}, now=T0, **timing)
    assert any(fragment in message for message in caught.value.errors[field]), caught.value.errors
    assert Schedule.objects.count() == 0
    assert _octopus_periodic_tasks().count() == 0


def test_it_rejects_params_that_break_the_schema_per_field_and_saves_nothing(greet, alice):
    with pytest.raises(ScheduleInvalid) as caught:
        schedule_create(
            plugin=greet, owner=alice, params={"times": "x", "colour": 1}, cron="* * * * *",
            now=T0,
        )  # fmt: skip
    errors = caught.value.errors
    assert errors["params.name"] == ["This field is required."]
    assert errors["params.colour"] == ["Unknown parameter."]
    assert "params.times" in errors
    assert Schedule.objects.count() == 0
    assert _octopus_periodic_tasks().count() == 0


def test_it_reports_every_problem_at_once(greet, alice):
    with pytest.raises(ScheduleInvalid) as caught:
        schedule_create(
            plugin=greet, owner=alice, params={}, cron="nope", timezone_name="Nowhere",
            overlap="sometimes", now=T0,
        )  # fmt: skip
    assert {"cron", "timezone", "params.name", "overlap"} <= set(caught.value.errors)


def test_it_refuses_a_user_without_the_run_permission(greet, charlie):
    with pytest.raises(PermissionDenied):
        schedule_create(plugin=greet, owner=charlie, params={"name": "a"}, cron="* * * * *", now=T0)
    assert Schedule.objects.count() == 0


def test_it_refuses_a_plugin_that_cannot_run(greet, alice):
    greet.is_active = False
    greet.save()
    with pytest.raises(ScheduleInvalid) as caught:
        _interval(greet, alice)
    assert "inactive" in caught.value.errors["plugin"][0]


# --- update / delete -------------------------------------------------------------------------


def test_disabling_a_schedule_disables_its_periodic_task(greet, alice):
    schedule = _interval(greet, alice)
    schedule_update(schedule=schedule, enabled=False, now=T0)
    assert not PeriodicTask.objects.get(pk=schedule.periodic_task_id).enabled
    schedule_update(schedule=schedule, enabled=True, now=T0)
    assert PeriodicTask.objects.get(pk=schedule.periodic_task_id).enabled


def test_switching_from_an_interval_to_a_cron_replaces_the_beat_timing(greet, alice):
    schedule = _interval(greet, alice)
    schedule_update(schedule=schedule, cron="*/5 * * * *", timezone="Europe/Berlin", now=T0)
    schedule.refresh_from_db()
    assert (schedule.cron, schedule.interval_seconds) == ("*/5 * * * *", None)
    periodic = PeriodicTask.objects.get(pk=schedule.periodic_task_id)
    assert periodic.interval is None
    assert periodic.crontab.minute == "*/5"


def test_a_bad_update_changes_nothing(greet, alice):
    schedule = _interval(greet, alice)
    with pytest.raises(ScheduleInvalid) as caught:
        schedule_update(schedule=schedule, cron="99 * * * *", params={"name": 3}, now=T0)
    assert {"cron", "params.name"} <= set(caught.value.errors)
    fresh = Schedule.objects.get(pk=schedule.pk)
    assert (fresh.cron, fresh.interval_seconds, fresh.params) == ("", 10, {"name": "a"})
    assert PeriodicTask.objects.get(pk=schedule.periodic_task_id).interval.every == 10


def test_deleting_a_schedule_removes_its_periodic_task_and_keeps_its_runs(greet, alice):
    schedule = _interval(greet, alice)
    fire = schedule_fire(schedule_id=schedule.pk, now=T0 + timedelta(seconds=10))
    schedule_delete(schedule=schedule)
    assert _octopus_periodic_tasks().count() == 0
    task = Task.objects.get(pk=fire.task_id)
    assert task.schedule_id is None


# --- fire ------------------------------------------------------------------------------------


def test_a_fire_creates_a_pending_run_with_the_schedule_set(greet, alice):
    schedule = _interval(greet, alice)
    fire = schedule_fire(schedule_id=schedule.pk, now=T0 + timedelta(seconds=10.3))
    assert fire.outcome == FireOutcome.CREATED
    assert fire.nominal_at == T0 + timedelta(seconds=10)
    task = Task.objects.get()
    assert (task.schedule_id, task.user, task.status) == (schedule.pk, alice, TaskStatus.PENDING)
    assert task.params == {"name": "a", "times": 1}
    assert fire.task == task


def test_the_same_nominal_time_fired_twice_makes_one_run(greet, alice):
    schedule = _interval(greet, alice, overlap="allow")
    first = schedule_fire(schedule_id=schedule.pk, now=T0 + timedelta(seconds=10.1))
    # A restarted or second beat fires again a few seconds later, same interval slot.
    again = schedule_fire(schedule_id=schedule.pk, now=T0 + timedelta(seconds=14))
    assert first is not None and again is None
    assert Task.objects.count() == 1
    assert ScheduleFire.objects.count() == 1
    assert schedule_fire(schedule_id=schedule.pk, now=T0 + timedelta(seconds=20)) is not None
    assert Task.objects.count() == 2


def test_an_edit_that_keeps_the_timing_keeps_the_nominal_times(greet, alice):
    schedule = _interval(greet, alice, overlap="allow")
    schedule_fire(schedule_id=schedule.pk, now=T0 + timedelta(seconds=10.1))
    schedule_update(schedule=schedule, params={"name": "b"}, now=T0 + timedelta(seconds=11))
    assert schedule_fire(schedule_id=schedule.pk, now=T0 + timedelta(seconds=12)) is None
    assert Task.objects.count() == 1


def test_overlap_skip_records_a_skip_while_the_previous_run_is_pending_or_running(greet, alice):
    schedule = _interval(greet, alice)
    first = schedule_fire(schedule_id=schedule.pk, now=T0 + timedelta(seconds=10))
    skipped = schedule_fire(schedule_id=schedule.pk, now=T0 + timedelta(seconds=20))
    assert skipped.outcome == FireOutcome.SKIPPED_OVERLAP
    assert str(first.task_id) in skipped.reason and "PENDING" in skipped.reason
    assert skipped.task is None
    Task.objects.filter(pk=first.task_id).update(status=TaskStatus.SUCCESS)
    third = schedule_fire(schedule_id=schedule.pk, now=T0 + timedelta(seconds=30))
    assert third.outcome == FireOutcome.CREATED
    assert Task.objects.count() == 2


def test_overlap_allow_starts_a_run_even_while_one_is_going(greet, alice):
    schedule = _interval(greet, alice, overlap="allow")
    schedule_fire(schedule_id=schedule.pk, now=T0 + timedelta(seconds=10))
    schedule_fire(schedule_id=schedule.pk, now=T0 + timedelta(seconds=20))
    assert Task.objects.filter(schedule=schedule, status=TaskStatus.PENDING).count() == 2


@pytest.mark.parametrize(
    ("change", "fragment"),
    [({"is_active": False}, "not active"), ({"is_missing": True}, "missing")],
)
def test_a_plugin_that_cannot_run_stops_the_schedule_with_the_reason(
    greet, alice, change, fragment
):
    schedule = _interval(greet, alice)
    for name, value in change.items():
        setattr(greet, name, value)
    greet.save()
    fire = schedule_fire(schedule_id=schedule.pk, now=T0 + timedelta(seconds=10))
    assert fire.outcome == FireOutcome.SKIPPED_PLUGIN
    assert fragment in fire.reason
    assert Task.objects.count() == 0
    schedule.refresh_from_db()
    assert schedule.not_firing_reason


def test_params_are_validated_again_when_fired(greet, alice):
    schedule = _interval(greet, alice)
    greet.params_schema = {**greet.params_schema, "required": ["name", "target"]}
    greet.save()
    fire = schedule_fire(schedule_id=schedule.pk, now=T0 + timedelta(seconds=10))
    assert fire.outcome == FireOutcome.SKIPPED_PARAMS
    assert "target" in fire.reason
    assert Task.objects.count() == 0


def test_an_owner_who_lost_the_permission_gets_no_runs(greet, alice):
    schedule = _interval(greet, alice)
    alice.user_permissions.clear()
    fire = schedule_fire(schedule_id=schedule.pk, now=T0 + timedelta(seconds=10))
    assert fire.outcome == FireOutcome.SKIPPED_OWNER
    assert Task.objects.count() == 0


def test_a_disabled_schedule_records_nothing_when_a_late_fire_arrives(greet, alice):
    schedule = _interval(greet, alice)
    schedule_update(schedule=schedule, enabled=False, now=T0)
    assert schedule_fire(schedule_id=schedule.pk, now=T0 + timedelta(seconds=10)) is None
    assert ScheduleFire.objects.count() == 0 and Task.objects.count() == 0


def test_a_one_off_runs_once_and_then_is_done(greet, alice):
    when = T0 + timedelta(minutes=5)
    schedule = schedule_create(plugin=greet, owner=alice, params={"name": "a"}, run_at=when, now=T0)
    assert schedule_fire(schedule_id=schedule.pk, now=when - timedelta(seconds=1)) is None
    fire = schedule_fire(schedule_id=schedule.pk, now=when + timedelta(seconds=0.2))
    assert fire.nominal_at == when and fire.task is not None
    schedule.refresh_from_db()
    assert not schedule.enabled
    assert schedule_next_runs(schedule=schedule, now=when) == []
    assert schedule_fire(schedule_id=schedule.pk, now=when + timedelta(seconds=5)) is None
    assert Task.objects.count() == 1


# --- cron and DST ----------------------------------------------------------------------------


def _fires_by_local_day(schedule, start, end, step) -> Counter:
    now = start
    while now < end:
        schedule_fire(schedule_id=schedule.pk, now=now)
        now += step
    created = ScheduleFire.objects.filter(schedule=schedule, outcome=FireOutcome.CREATED)
    return Counter(f.nominal_at.astimezone(BERLIN).date().isoformat() for f in created)


def test_a_daily_0230_berlin_schedule_fires_once_on_the_spring_forward_day(greet, alice):
    schedule = schedule_create(
        plugin=greet, owner=alice, params={"name": "a"}, cron="30 2 * * *",
        timezone_name="Europe/Berlin", overlap="allow", now=datetime(2025, 3, 28, tzinfo=UTC),
    )  # fmt: skip
    # Fire every 5 minutes across the change (far more often than beat would).
    days = _fires_by_local_day(
        schedule, datetime(2025, 3, 28, 22, 0, tzinfo=UTC), datetime(2025, 3, 31, 6, 0, tzinfo=UTC),
        timedelta(minutes=5),
    )  # fmt: skip
    assert days == {"2025-03-28": 1, "2025-03-29": 1, "2025-03-30": 1, "2025-03-31": 1}
    nominal = ScheduleFire.objects.filter(schedule=schedule).values_list("nominal_at", flat=True)
    # 02:30 does not exist on 30 March: it is 01:30 UTC (03:30 CEST), where Celery's
    # TzAwareCrontab fires too.
    assert datetime(2025, 3, 30, 1, 30, tzinfo=UTC) in set(nominal)
    assert datetime(2025, 3, 31, 0, 30, tzinfo=UTC) in set(nominal)
    assert Task.objects.filter(schedule=schedule).count() == 4


def test_a_daily_0230_berlin_schedule_fires_once_on_the_fall_back_day(greet, alice):
    schedule = schedule_create(
        plugin=greet, owner=alice, params={"name": "a"}, cron="30 2 * * *",
        timezone_name="Europe/Berlin", overlap="allow", now=datetime(2025, 10, 25, tzinfo=UTC),
    )  # fmt: skip
    days = _fires_by_local_day(
        schedule, datetime(2025, 10, 25, 22, 0, tzinfo=UTC),
        datetime(2025, 10, 26, 22, 0, tzinfo=UTC), timedelta(minutes=5),
    )  # fmt: skip
    assert days["2025-10-26"] == 1


def test_the_next_five_runs_of_a_weekday_cron_in_berlin(greet, alice):
    schedule = schedule_create(
        plugin=greet, owner=alice, params={"name": "a"}, cron="0 2 * * 1-5",
        timezone_name="Europe/Berlin", now=T0,
    )  # fmt: skip
    runs = schedule_next_runs(schedule=schedule, now=datetime(2025, 3, 27, 12, tzinfo=UTC))
    local = [r.astimezone(BERLIN).strftime("%a %d %H:%M %Z") for r in runs]
    assert local == [
        "Fri 28 02:00 CET", "Mon 31 02:00 CEST", "Tue 01 02:00 CEST", "Wed 02 02:00 CEST",
        "Thu 03 02:00 CEST",
    ]  # fmt: skip


def test_the_preview_describes_the_timing_in_words():
    text, runs = timing_preview(cron="0 2 * * 1-5", timezone_name="Europe/Berlin", now=T0)
    assert text == "At 02:00, Monday through Friday (Europe/Berlin)"
    assert len(runs) == 5
    text, runs = timing_preview(interval_seconds=600, now=T0)
    assert text == "Every 10 minutes"
    assert runs[0] == T0 + timedelta(minutes=10)
