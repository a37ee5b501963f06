"""Schedule workflows: create, update, delete, fire — and the timing math they share.

Every change to a Schedule goes through these functions, which keep its django-celery-beat
PeriodicTask (+ CrontabSchedule / IntervalSchedule / ClockedSchedule) in step in the same
transaction. Beat (DatabaseScheduler) sends `schedules_app.fire_schedule` with the schedule's
id; `schedule_fire` turns that into at most one run per nominal fire time.

One beat process runs per deployment. A second one by mistake, a beat restart (its
`last_run_at` is written back only every few minutes, so a restarted beat often fires again
at once) or an edit all end in the same place: the same nominal time, one ScheduleFire row,
one run.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.utils import timezone
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
)

from plugins_app.models import Plugin
from schedules_app.cron import (
    CronInvalid,
    cron_describe,
    cron_latest_tick,
    cron_next_ticks,
    cron_parse,
    timezone_get,
)
from schedules_app.models import FireOutcome, Overlap, Schedule, ScheduleFire
from tasks_app.models import Task, TaskStatus
from tasks_app.services import ParamsInvalid, PluginNotRunnable, params_validate, task_create

logger = logging.getLogger(__name__)

FIRE_TASK_NAME = "schedules_app.fire_schedule"
RUN_PERMISSION = "plugins_app.run_plugin"
# Fire rows are the dedupe memory; a nominal time older than this can never come back.
FIRE_HISTORY = timedelta(days=30)
MAX_INTERVAL_SECONDS = 366 * 24 * 3600
TIMING_FIELDS = ("cron", "interval_seconds", "run_at")
EDITABLE_FIELDS = ("params", "cron", "timezone", "interval_seconds", "run_at", "enabled", "overlap")


class ScheduleInvalid(Exception):
    """The input cannot be saved; nothing was. `errors` maps a field (`cron`, `timezone`,
    `interval_seconds`, `run_at`, `overlap`, `params` or `params.<name>`, `plugin`; `""` for
    the schedule as a whole) to its messages."""

    def __init__(self, errors: dict[str, list[str]]):
        self.errors = errors
        super().__init__(
            "; ".join(f"{field or 'schedule'}: {' '.join(msgs)}" for field, msgs in errors.items())
        )


@dataclass(frozen=True)
class Timing:
    """A validated cron / interval / one-off timing (exactly one is set)."""

    cron: str = ""
    timezone: str = "UTC"
    interval_seconds: int | None = None
    run_at: datetime | None = None

    def describe(self) -> str:
        if self.cron:
            return cron_describe(self.cron, self.timezone)
        if self.interval_seconds:
            return f"Every {_human_seconds(self.interval_seconds)}"
        return f"Once, at {self.run_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"

    def next_runs(self, *, after: datetime, anchor: datetime, count: int = 5) -> list[datetime]:
        """The next `count` nominal fire times strictly after `after` (UTC)."""
        if self.cron:
            return cron_next_ticks(cron_parse(self.cron), timezone_get(self.timezone), after, count)
        if self.interval_seconds:
            step = timedelta(seconds=self.interval_seconds)
            k = max(0, (after - anchor) // step + 1)
            return [anchor + (k + i) * step for i in range(count)]
        return [self.run_at] if self.run_at > after else []

    def nominal_time(self, *, at: datetime, anchor: datetime) -> datetime | None:
        """The nominal fire time a fire sent at `at` stands for: the latest tick ≤ `at`.
        Deterministic — two beats, or one beat before and after a restart, agree."""
        if self.cron:
            return cron_latest_tick(cron_parse(self.cron), timezone_get(self.timezone), at)
        if self.interval_seconds:
            if at < anchor:
                return None
            step = timedelta(seconds=self.interval_seconds)
            return anchor + ((at - anchor) // step) * step
        return self.run_at if at >= self.run_at else None


def _human_seconds(seconds: int) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0 and seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


def schedule_timing(schedule: Schedule) -> Timing:
    return Timing(
        cron=schedule.cron,
        timezone=schedule.timezone,
        interval_seconds=schedule.interval_seconds,
        run_at=schedule.run_at,
    )


def timing_clean(
    *,
    cron: str | None = "",
    timezone_name: str | None = "UTC",
    interval_seconds: Any = None,
    run_at: datetime | None = None,
    now: datetime | None = None,
    errors: dict[str, list[str]] | None = None,
) -> Timing:
    """Validate a timing. Raises ScheduleInvalid with every problem found (or adds them to
    `errors` when given, for the caller to raise together with its own)."""
    own = errors is None
    errors = {} if errors is None else errors
    now = now or timezone.now()
    cron = (cron or "").strip()
    tz_name = (timezone_name or "UTC").strip()
    try:
        timezone_get(tz_name)
    except CronInvalid as exc:
        errors.setdefault("timezone", []).append(str(exc))
    given = [
        name
        for name, value in (("cron", cron), ("interval_seconds", interval_seconds),
                            ("run_at", run_at))
        if value not in (None, "")
    ]  # fmt: skip
    if len(given) != 1:
        errors.setdefault("", []).append(
            "Give exactly one of: a cron expression, an interval in seconds, or a one-off time"
            + (f" (got {', '.join(given)})." if given else ".")
        )
    if cron:
        try:
            cron_parse(cron)
        except CronInvalid as exc:
            errors.setdefault("cron", []).append(str(exc))
    if interval_seconds not in (None, ""):
        if isinstance(interval_seconds, bool) or not isinstance(interval_seconds, int):
            errors.setdefault("interval_seconds", []).append("Must be a whole number of seconds.")
            interval_seconds = None
        elif interval_seconds <= 0:
            errors.setdefault("interval_seconds", []).append("Must be more than 0 seconds.")
        elif interval_seconds > MAX_INTERVAL_SECONDS:
            errors.setdefault("interval_seconds", []).append(
                f"Must be at most {MAX_INTERVAL_SECONDS} seconds (a year); use a cron expression."
            )
    if run_at is not None:
        if timezone.is_naive(run_at):
            errors.setdefault("run_at", []).append("Give a timezone with the time.")
        elif run_at <= now:
            errors.setdefault("run_at", []).append("Must be in the future.")
    if own and errors:
        raise ScheduleInvalid(errors)
    return Timing(
        cron=cron,
        timezone=tz_name,
        interval_seconds=interval_seconds or None,
        run_at=run_at.astimezone(UTC) if run_at is not None and not timezone.is_naive(run_at)
        else run_at,
    )  # fmt: skip


def _params_clean(plugin: Plugin, params: Any, errors: dict[str, list[str]]) -> None:
    try:
        params_validate(plugin.params_schema, params)
    except ParamsInvalid as exc:
        for field, messages in exc.errors.items():
            errors.setdefault(f"params.{field}" if field else "params", []).extend(messages)


def _overlap_clean(overlap: str, errors: dict[str, list[str]]) -> None:
    if overlap not in Overlap.values:
        errors.setdefault("overlap", []).append(
            f"Must be one of {', '.join(Overlap.values)}, got {overlap!r}."
        )


def schedule_create(
    *,
    plugin: Plugin,
    owner,
    params: dict | None = None,
    cron: str = "",
    timezone_name: str = "UTC",
    interval_seconds: int | None = None,
    run_at: datetime | None = None,
    enabled: bool = True,
    overlap: str = Overlap.SKIP,
    now: datetime | None = None,
) -> Schedule:
    """Validate everything, save the schedule and its PeriodicTask in one transaction.

    Raises PermissionDenied (owner lacks `run_plugin`) or ScheduleInvalid with every problem
    at once; in both cases nothing is saved. The plugin must be runnable now."""
    if not (owner and owner.is_active and owner.has_perm(RUN_PERMISSION)):
        raise PermissionDenied("You need the run_plugin permission to schedule plugins.")
    now = now or timezone.now()
    params = {} if params is None else params
    errors: dict[str, list[str]] = {}
    if not plugin.is_runnable:
        errors.setdefault("plugin", []).append(
            f"The plugin {plugin.pk} cannot run now ({_plugin_reason(plugin)})."
        )
    timing = timing_clean(
        cron=cron, timezone_name=timezone_name, interval_seconds=interval_seconds,
        run_at=run_at, now=now, errors=errors,
    )  # fmt: skip
    _params_clean(plugin, params, errors)
    _overlap_clean(overlap, errors)
    if errors:
        raise ScheduleInvalid(errors)
    with transaction.atomic():
        schedule = Schedule.objects.create(
            plugin=plugin, owner=owner, params=params, cron=timing.cron,
            timezone=timing.timezone, interval_seconds=timing.interval_seconds,
            run_at=timing.run_at, enabled=enabled, overlap=overlap, anchor_at=now,
        )  # fmt: skip
        _periodic_task_sync(schedule, timing_changed=True)
    return schedule


def schedule_update(*, schedule: Schedule, now: datetime | None = None, **changes: Any) -> Schedule:
    """Apply `changes` (any of params, cron, timezone, interval_seconds, run_at, enabled,
    overlap) and resync the PeriodicTask. Returns the schedule.

    Giving any of cron / interval_seconds / run_at replaces the timing: the ones not given are
    cleared. Raises ScheduleInvalid (nothing saved) for bad values or unknown fields."""
    unknown = set(changes) - set(EDITABLE_FIELDS)
    if unknown:
        raise ScheduleInvalid({name: ["This field cannot be changed."] for name in unknown})
    now = now or timezone.now()
    errors: dict[str, list[str]] = {}
    current = schedule_timing(schedule)
    if any(name in changes for name in TIMING_FIELDS):
        cron = changes.get("cron") or ""
        interval = changes.get("interval_seconds")
        run_at = changes.get("run_at")
    else:
        cron, interval, run_at = current.cron, current.interval_seconds, current.run_at
    # A one-off time already passed is fine to keep; it is only checked when it changes.
    check_now = now if run_at != current.run_at else datetime.min.replace(tzinfo=UTC)
    timing = timing_clean(
        cron=cron, timezone_name=changes.get("timezone", schedule.timezone),
        interval_seconds=interval, run_at=run_at, now=check_now, errors=errors,
    )  # fmt: skip
    params = changes.get("params", schedule.params)
    if "params" in changes:
        _params_clean(schedule.plugin, params, errors)
    overlap = changes.get("overlap", schedule.overlap)
    _overlap_clean(overlap, errors)
    enabled = changes.get("enabled", schedule.enabled)
    if not isinstance(enabled, bool):
        errors.setdefault("enabled", []).append("Must be true or false.")
    if errors:
        raise ScheduleInvalid(errors)
    timing_changed = timing != current
    with transaction.atomic():
        schedule.params = params
        schedule.cron = timing.cron
        schedule.timezone = timing.timezone
        schedule.interval_seconds = timing.interval_seconds
        schedule.run_at = timing.run_at
        schedule.enabled = enabled
        schedule.overlap = overlap
        if timing_changed:
            schedule.anchor_at = now
        schedule.save()
        _periodic_task_sync(schedule, timing_changed=timing_changed)
    return schedule


def schedule_delete(*, schedule: Schedule) -> None:
    """Delete the schedule, its PeriodicTask (beat stops at its next DB check, ≤ 5 s) and its
    fire history. Its runs stay, with `schedule` cleared."""
    with transaction.atomic():
        periodic = schedule.periodic_task
        clocked = periodic.clocked if periodic else None
        schedule.delete()
        if periodic is not None:
            periodic.delete()
        if clocked is not None:
            clocked.delete()


def _periodic_task_sync(schedule: Schedule, *, timing_changed: bool) -> None:
    """Make the schedule's PeriodicTask say what the schedule says. Its save() bumps
    PeriodicTasks.last_update, which is how DatabaseScheduler notices (≤ 5 s)."""
    periodic = schedule.periodic_task or PeriodicTask(
        name=schedule.periodic_task_name, task=FIRE_TASK_NAME
    )
    old_clocked = periodic.clocked if periodic.pk else None
    periodic.interval = periodic.crontab = periodic.solar = periodic.clocked = None
    if schedule.cron:
        minute, hour, day_of_month, month_of_year, day_of_week = schedule.cron.split()
        periodic.crontab, _ = CrontabSchedule.objects.get_or_create(
            minute=minute, hour=hour, day_of_month=day_of_month,
            month_of_year=month_of_year, day_of_week=day_of_week,
            timezone=timezone_get(schedule.timezone),
        )  # fmt: skip
    elif schedule.interval_seconds:
        periodic.interval, _ = IntervalSchedule.objects.get_or_create(
            every=schedule.interval_seconds, period=IntervalSchedule.SECONDS
        )
    else:
        if old_clocked is not None and old_clocked.clocked_time == schedule.run_at:
            periodic.clocked = old_clocked
        else:
            periodic.clocked = ClockedSchedule.objects.create(clocked_time=schedule.run_at)
    periodic.one_off = periodic.clocked is not None
    periodic.kwargs = json.dumps({"schedule_id": schedule.pk})
    periodic.enabled = schedule.enabled
    periodic.description = f"Octopus schedule #{schedule.pk}: {schedule.plugin_id}"
    if timing_changed:
        periodic.last_run_at = None  # beat counts the first interval from now
    periodic.save()
    if old_clocked is not None and old_clocked != periodic.clocked:
        old_clocked.delete()
    if schedule.periodic_task_id != periodic.pk:
        schedule.periodic_task = periodic
        Schedule.objects.filter(pk=schedule.pk).update(periodic_task=periodic)


def _plugin_reason(plugin: Plugin) -> str:
    if plugin.is_missing:
        return "its file is missing"
    if plugin.discovery_error:
        return f"it has an error: {plugin.discovery_error}"
    if not plugin.is_active:
        return "it is inactive"
    return "ok"


def schedule_fire(*, schedule_id: int, now: datetime | None = None) -> ScheduleFire | None:
    """Handle one fire of schedule `schedule_id` sent at `now` (beat's clock).

    Returns the ScheduleFire recorded — outcome `created` with its task, or a `skipped_*`
    outcome with the reason and no task — or None when nothing was recorded: the schedule is
    gone or disabled, its one-off time has not come, or this nominal time was already
    claimed (a duplicate: beat restart, second beat, redelivery).

    Concurrency: the schedule row is locked (SELECT … FOR UPDATE on PostgreSQL; SQLite
    serialises writers) so the overlap check and the run it creates are one step; the fire
    row is insert-if-absent under the unique (schedule, nominal_at) constraint. Costs about
    six queries and, after commit, one enqueue."""
    now = now or timezone.now()
    with transaction.atomic():
        schedule = (
            Schedule.objects.select_for_update(of=("self",))
            .select_related("plugin", "owner")
            .filter(pk=schedule_id)
            .first()
        )
        if schedule is None or not schedule.enabled:
            return None
        nominal = schedule_timing(schedule).nominal_time(at=now, anchor=schedule.anchor_at)
        if nominal is None:
            return None
        try:
            with transaction.atomic():
                fire = ScheduleFire.objects.create(
                    schedule=schedule, nominal_at=nominal, fired_at=now,
                    outcome=FireOutcome.CREATED,
                )  # fmt: skip
        except IntegrityError:
            logger.info(
                "schedule %s: nominal time %s already fired; duplicate ignored",
                schedule.pk, nominal.isoformat(),
            )  # fmt: skip
            return None
        fire.outcome, fire.reason, fire.task = _fire_outcome(schedule)
        fire.save(update_fields=["outcome", "reason", "task"])
        if schedule.run_at:
            # A one-off is done once its time has been claimed (beat disables its entry too).
            schedule.enabled = False
            schedule.save(update_fields=["enabled", "updated_at"])
            _periodic_task_sync(schedule, timing_changed=False)
        ScheduleFire.objects.filter(schedule=schedule, nominal_at__lt=now - FIRE_HISTORY).delete()
    logger.info(
        "schedule %s: nominal time %s → %s %s", schedule.pk, nominal.isoformat(),
        fire.outcome, fire.task_id or fire.reason,
    )  # fmt: skip
    return fire


def _fire_outcome(schedule: Schedule) -> tuple[str, str, Task | None]:
    owner = schedule.owner
    if not (owner.is_active and owner.has_perm(RUN_PERMISSION)):
        return FireOutcome.SKIPPED_OWNER, f"{owner.get_username()} may not run plugins.", None
    if schedule.overlap == Overlap.SKIP:
        running = (
            Task.objects.filter(
                schedule=schedule, status__in=(TaskStatus.PENDING, TaskStatus.RUNNING)
            )
            .values_list("pk", "status")
            .first()
        )
        if running:
            return (
                FireOutcome.SKIPPED_OVERLAP,
                f"The previous run {running[0]} is still {running[1]}.",
                None,
            )
    try:
        task = task_create(
            plugin=schedule.plugin, params=schedule.params, user=owner, schedule=schedule
        )
    except PluginNotRunnable as exc:
        return FireOutcome.SKIPPED_PLUGIN, str(exc), None
    except ParamsInvalid as exc:
        return FireOutcome.SKIPPED_PARAMS, str(exc), None
    return FireOutcome.CREATED, "", task


def schedule_next_runs(
    *, schedule: Schedule, now: datetime | None = None, count: int = 5
) -> list[datetime]:
    """The next `count` nominal fire times after `now`; [] when disabled or a one-off done."""
    if not schedule.enabled:
        return []
    now = now or timezone.now()
    return schedule_timing(schedule).next_runs(after=now, anchor=schedule.anchor_at, count=count)


def timing_preview(
    *,
    cron: str = "",
    timezone_name: str = "UTC",
    interval_seconds: int | None = None,
    run_at: datetime | None = None,
    now: datetime | None = None,
    count: int = 5,
) -> tuple[str, list[datetime]]:
    """(description, next `count` fire times) for a timing not saved yet — the form's live
    preview. Raises ScheduleInvalid like schedule_create would."""
    now = now or timezone.now()
    timing = timing_clean(
        cron=cron, timezone_name=timezone_name, interval_seconds=interval_seconds,
        run_at=run_at, now=now,
    )  # fmt: skip
    return timing.describe(), timing.next_runs(after=now, anchor=now, count=count)


def schedules_with_status(*, schedules, now: datetime | None = None) -> list[Schedule]:
    """The schedules as a list, each with `description`, `next_run_at`, `last_task` (the
    latest run it created, or None) and `last_fire` (the latest fire, or None) attached.
    Costs three queries whatever the number of schedules."""
    from django.db.models import OuterRef, Subquery

    now = now or timezone.now()
    latest_task = Task.objects.filter(schedule=OuterRef("pk")).order_by("-created_at")
    latest_fire = ScheduleFire.objects.filter(schedule=OuterRef("pk")).order_by("-nominal_at")
    rows = list(
        schedules.select_related("plugin", "owner").annotate(
            last_task_pk=Subquery(latest_task.values("pk")[:1]),
            last_fire_pk=Subquery(latest_fire.values("pk")[:1]),
        )
    )
    tasks = Task.objects.in_bulk([r.last_task_pk for r in rows if r.last_task_pk])
    fires = ScheduleFire.objects.in_bulk([r.last_fire_pk for r in rows if r.last_fire_pk])
    for row in rows:
        row.last_task = tasks.get(row.last_task_pk)
        row.last_fire = fires.get(row.last_fire_pk)
        row.description = schedule_timing(row).describe()
        upcoming = schedule_next_runs(schedule=row, now=now, count=1)
        row.next_run_at = upcoming[0] if upcoming else None
    return rows
