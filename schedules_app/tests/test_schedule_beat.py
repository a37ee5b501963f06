"""Schedules end to end: a real `celery beat` (DatabaseScheduler) and a real worker process,
on the test database and Redis. Intervals are short (1–6 s) to keep the suite fast; they take
the same code path as a 10 s one."""

from __future__ import annotations

import time
from datetime import timedelta
from itertools import pairwise

import pytest

from schedules_app.models import FireOutcome, ScheduleFire
from schedules_app.services import schedule_create, schedule_update
from schedules_app.tests.conftest import wait_for
from tasks_app.models import Task, TaskStatus

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

SLOW_SOURCE = '''
    """Take a while."""
    import time

    def run(context, seconds: float = 2.5) -> str:
        context.log.info("sleeping %s", seconds)
        time.sleep(seconds)
        return "done"
'''


def _created_fires(schedule):
    return list(
        ScheduleFire.objects.filter(schedule=schedule, outcome=FireOutcome.CREATED).order_by(
            "nominal_at"
        )
    )


def test_an_interval_schedule_runs_every_interval_with_the_schedule_set_until_disabled(
    greet, alice, worker_factory, beat_factory
):
    worker_factory()
    schedule = schedule_create(
        plugin=greet, owner=alice, params={"name": "beat"}, interval_seconds=2
    )
    beat_factory()

    def three_done():
        done = Task.objects.filter(schedule=schedule, status=TaskStatus.SUCCESS)
        return list(done.order_by("created_at")) if done.count() >= 3 else None

    tasks = wait_for(three_done, timeout=40)[:3]
    assert all(t.schedule_id == schedule.pk and t.user == alice for t in tasks)
    assert all(t.result == {"greeted": "beat"} for t in tasks)
    gaps = [(b.created_at - a.created_at).total_seconds() for a, b in pairwise(tasks)]
    assert all(1.0 <= gap <= 3.5 for gap in gaps), gaps
    nominal = [f.nominal_at for f in _created_fires(schedule)][:3]
    assert [b - a for a, b in pairwise(nominal)] == [timedelta(seconds=2)] * 2

    schedule_update(schedule=schedule, enabled=False)
    settled = Task.objects.filter(schedule=schedule).count()
    time.sleep(7)  # three intervals and a beat reload
    assert Task.objects.filter(schedule=schedule).count() == settled


def test_overlap_skip_never_has_two_runs_of_a_slow_plugin_at_once(
    make_plugin, alice, worker_factory, beat_factory
):
    slow = make_plugin(
        "slow",
        SLOW_SOURCE,
        schema={"type": "object", "properties": {"seconds": {"type": "number", "default": 2.5}}},
    )
    worker_factory(concurrency=2)
    schedule = schedule_create(plugin=slow, owner=alice, params={}, interval_seconds=1)
    beat_factory()

    wait_for(
        lambda: Task.objects.filter(schedule=schedule, status=TaskStatus.SUCCESS).count() >= 2,
        timeout=40,
    )
    schedule_update(schedule=schedule, enabled=False)
    tasks = list(Task.objects.filter(schedule=schedule).order_by("created_at"))
    for earlier, later in pairwise(tasks):
        # The next run was created only once the previous one had finished.
        assert earlier.finished_at is not None
        assert later.created_at >= earlier.finished_at, (earlier, later)
    skips = ScheduleFire.objects.filter(schedule=schedule, outcome=FireOutcome.SKIPPED_OVERLAP)
    assert skips.count() >= 2
    assert all("still" in skip.reason for skip in skips)


def test_restarting_beat_mid_interval_creates_no_duplicate_run(
    greet, alice, worker_factory, beat_factory
):
    from django_celery_beat.models import PeriodicTask

    worker = worker_factory()
    schedule = schedule_create(
        plugin=greet, owner=alice, params={"name": "r"}, interval_seconds=10, overlap="allow"
    )
    first_beat = beat_factory()
    wait_for(lambda: len(_created_fires(schedule)) == 1, timeout=30)
    # A crash mid-interval, before beat wrote its last_run_at back: the new beat believes the
    # entry never ran and sends it again at once, inside the same 10 s slot.
    first_beat.stop(kill=True)
    PeriodicTask.objects.filter(pk=schedule.periodic_task_id).update(last_run_at=None)
    second_beat = beat_factory()
    wait_for(lambda: "duplicate ignored" in worker.output(), timeout=20)
    wait_for(lambda: len(_created_fires(schedule)) >= 2, timeout=30)
    schedule_update(schedule=schedule, enabled=False)

    assert f"Sending due task octopus-schedule-{schedule.pk}" in second_beat.output()
    fires = _created_fires(schedule)
    tasks = Task.objects.filter(schedule=schedule)
    assert tasks.count() == len(fires) == len({f.nominal_at for f in fires})
    assert fires[1].nominal_at - fires[0].nominal_at == timedelta(seconds=10)


def test_two_beats_by_mistake_still_make_one_run_per_nominal_time(
    greet, alice, worker_factory, beat_factory
):
    worker = worker_factory()
    schedule = schedule_create(
        plugin=greet, owner=alice, params={"name": "two"}, interval_seconds=2, overlap="allow"
    )
    beat_factory()
    beat_factory()
    wait_for(lambda: len(_created_fires(schedule)) >= 3, timeout=40)
    wait_for(lambda: worker.output().count("duplicate ignored") >= 2, timeout=20)
    schedule_update(schedule=schedule, enabled=False)
    fires = _created_fires(schedule)
    nominal = [f.nominal_at for f in fires]
    assert len(nominal) == len(set(nominal))
    assert Task.objects.filter(schedule=schedule).count() == len(fires)


def test_a_fire_is_timed_by_when_it_was_sent_not_when_a_worker_got_to_it(
    greet, alice, worker_factory
):
    from datetime import UTC, datetime

    from schedules_app.tasks import FIRED_AT_HEADER, fire_schedule

    worker_factory()
    schedule = schedule_create(
        plugin=greet, owner=alice, params={"name": "late"}, interval_seconds=60,
        overlap="allow",
    )  # fmt: skip
    # Publishing stamps the send time; a worker that gets to the message later still files
    # it under the interval slot it was sent in.
    sent = schedule.anchor_at + timedelta(seconds=61)
    fire_schedule.apply_async(args=[schedule.pk])  # stamped now: slot 0
    fire_schedule.apply_async(args=[schedule.pk], headers={FIRED_AT_HEADER: sent.isoformat()})
    wait_for(lambda: ScheduleFire.objects.filter(schedule=schedule).count() == 2, timeout=20)
    nominal = sorted(
        ScheduleFire.objects.filter(schedule=schedule).values_list("nominal_at", flat=True)
    )
    assert nominal == [schedule.anchor_at, schedule.anchor_at + timedelta(seconds=60)]
    assert ScheduleFire.objects.get(nominal_at=nominal[1]).fired_at == sent
    assert sent > datetime.now(UTC)  # the worker's own clock would have said slot 0
