"""`/api/v1/schedules`: list, create, update (PATCH) and delete schedules.

Access mirrors the pages: you see your own schedules (all with `tasks_app.view_all_tasks`),
another user's answers 404; only the owner or a superuser may change one (403); creating
needs `plugins_app.run_plugin`. Input the services reject is a 422 with per-field errors
(`cron`, `timezone`, `interval_seconds`, `run_at`, `overlap`, `params.<name>`; `""` for
"give exactly one of cron / interval_seconds / run_at").
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from ninja import Field, Query, Router, Schema
from ninja.responses import Status

from octopus.api import ApiError
from octopus.api_errors import JsonObject, Text
from plugins_app.models import Plugin
from schedules_app import services
from schedules_app.models import Overlap, Schedule

router = Router(tags=["schedules"])


class LastTaskOut(Schema):
    id: str
    status: str
    created_at: datetime


class LastFireOut(Schema):
    nominal_at: datetime
    outcome: str
    reason: str


class ScheduleOut(Schema):
    id: int
    plugin: str
    params: Any
    cron: str | None
    timezone: str
    interval_seconds: int | None
    run_at: datetime | None
    enabled: bool
    overlap: str
    next_run_at: datetime | None
    last_task: LastTaskOut | None
    owner: str
    description: str
    not_firing_reason: str
    last_fire: LastFireOut | None


class ScheduleListOut(Schema):
    total: int
    items: list[ScheduleOut]


class ScheduleCreateIn(Schema):
    plugin: Text
    params: JsonObject = Field(default_factory=dict)
    cron: Text | None = None
    timezone: Text = "UTC"
    interval_seconds: int | None = None
    run_at: datetime | None = None
    enabled: bool = True
    overlap: Text = Overlap.SKIP.value


class SchedulePatchIn(Schema):
    params: JsonObject | None = None
    cron: Text | None = None
    timezone: Text | None = None
    interval_seconds: int | None = None
    run_at: datetime | None = None
    enabled: bool | None = None
    overlap: Text | None = None


class ScheduleListQuery(Schema):
    plugin: Text | None = None
    enabled: bool | None = None
    limit: int = Field(50, ge=1, le=500)
    offset: int = Field(0, ge=0, le=2_147_483_647)


def schedule_out(row: Schedule) -> dict:
    """`row` comes from `services.schedules_with_status` (last task/fire, next run attached)."""
    task, fire = row.last_task, row.last_fire
    return {
        "id": row.pk, "plugin": row.plugin_id, "params": row.params,
        "cron": row.cron or None, "timezone": row.timezone,
        "interval_seconds": row.interval_seconds, "run_at": row.run_at,
        "enabled": row.enabled, "overlap": row.overlap, "next_run_at": row.next_run_at,
        "last_task": {"id": str(task.pk), "status": task.status, "created_at": task.created_at}
        if task else None,
        "owner": row.owner.get_username(), "description": row.description,
        "not_firing_reason": row.not_firing_reason,
        "last_fire": {"nominal_at": fire.nominal_at, "outcome": fire.outcome,
                      "reason": fire.reason} if fire else None,
    }  # fmt: skip


def _out(schedule: Schedule) -> dict:
    (row,) = services.schedules_with_status(schedules=Schedule.objects.filter(pk=schedule.pk))
    return schedule_out(row)


def _get_schedule_for_user(
    request: HttpRequest, schedule_id: int, *, edit: bool = True
) -> Schedule:
    schedule = (
        Schedule.objects.visible_to(request.auth)
        .select_related("plugin", "owner")
        .filter(pk=schedule_id)
        .first()
    )
    if schedule is None:
        raise ApiError(404, f"No schedule {schedule_id}.")
    if edit and not schedule.can_edit(request.auth):
        raise ApiError(403, "Only its owner or a superuser may change this schedule.")
    return schedule


def _invalid(exc: services.ScheduleInvalid) -> ApiError:
    return ApiError(422, "The schedule is invalid; nothing was saved.", errors=exc.errors)


@router.get("", response=ScheduleListOut)
def schedule_list(request: HttpRequest, filters: Query[ScheduleListQuery]):
    qs = Schedule.objects.visible_to(request.auth).order_by("id")
    if filters.plugin:
        qs = qs.filter(plugin_id=filters.plugin)
    if filters.enabled is not None:
        qs = qs.filter(enabled=filters.enabled)
    page = qs[filters.offset : filters.offset + filters.limit]
    rows = services.schedules_with_status(schedules=page)
    return {"total": qs.count(), "items": [schedule_out(r) for r in rows]}


@router.get("/{schedule_id}", response=ScheduleOut)
def schedule_detail(request: HttpRequest, schedule_id: int):
    return _out(_get_schedule_for_user(request, schedule_id, edit=False))


@router.post("", response={201: ScheduleOut})
def schedule_create_view(request: HttpRequest, payload: ScheduleCreateIn):
    plugin = Plugin.objects.filter(pk=payload.plugin).first()
    if plugin is None:
        raise ApiError(404, f"No plugin {payload.plugin!r}.")
    try:
        schedule = services.schedule_create(
            plugin=plugin, owner=request.auth, params=payload.params, cron=payload.cron or "",
            timezone_name=payload.timezone, interval_seconds=payload.interval_seconds,
            run_at=payload.run_at, enabled=payload.enabled, overlap=payload.overlap,
        )  # fmt: skip
    except PermissionDenied as exc:
        raise ApiError(403, str(exc))
    except services.ScheduleInvalid as exc:
        raise _invalid(exc)
    return Status(201, _out(schedule))


@router.patch("/{schedule_id}", response=ScheduleOut)
def schedule_update_view(request: HttpRequest, schedule_id: int, payload: SchedulePatchIn):
    """Only the fields sent change. Sending any of cron / interval_seconds / run_at replaces
    the timing (the others are cleared); `null` for a field that cannot be empty is a 422."""
    schedule = _get_schedule_for_user(request, schedule_id)
    changes = payload.model_dump(exclude_unset=True)
    for name in ("params", "timezone", "enabled", "overlap"):
        if name in changes and changes[name] is None:
            raise ApiError(422, "Invalid input.", errors={name: ["May not be null."]})
    try:
        services.schedule_update(schedule=schedule, **changes)
    except services.ScheduleInvalid as exc:
        raise _invalid(exc)
    return _out(schedule)


@router.delete("/{schedule_id}", response={204: None})
def schedule_delete_view(request: HttpRequest, schedule_id: int):
    services.schedule_delete(schedule=_get_schedule_for_user(request, schedule_id))
    return Status(204, None)
