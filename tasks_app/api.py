"""`/api/v1/tasks`: start, list, read, cancel and re-run runs; read, count and download logs.

Access: a user sees their own runs; `tasks_app.view_all_tasks` sees every run. Another
user's run answers 404 — the same as a run that does not exist, so ids cannot be probed.
Starting a run needs `plugins_app.run_plugin`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, StreamingHttpResponse
from ninja import Field, Query, Router, Schema, Status

from octopus.api_errors import ApiError, JsonObject, Text
from plugins_app.models import Plugin
from tasks_app import logquery
from tasks_app.logquery import LogFilter, LogFilterInvalid
from tasks_app.models import Task
from tasks_app.services import ParamsInvalid, PluginNotRunnable, task_cancel, task_create

router = Router(tags=["tasks"])

MAX_INT = 2_147_483_647  # keeps every number inside a 32-bit column on both databases


# --- schemas ------------------------------------------------------------------------------------


class ProgressOut(Schema):
    done: float | None
    total: float | None
    message: str
    percent: float | None


class TaskOut(Schema):
    id: uuid.UUID
    plugin: str
    status: str
    params: Any
    result: Any
    error: str
    user: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    progress: ProgressOut | None
    schedule: int | None
    log_total: int


def task_out(task: Task) -> dict:
    has_progress = task.progress_done is not None or bool(task.progress_message)
    return {
        "id": task.id,
        "plugin": task.plugin_id,
        "status": task.status,
        "params": task.params,
        "result": task.result,
        "error": task.error,
        "user": task.user.get_username() if task.user_id else None,
        "created_at": task.created_at,
        "started_at": task.started_at,
        "finished_at": task.finished_at,
        "progress": {
            "done": task.progress_done,
            "total": task.progress_total,
            "message": task.progress_message,
            "percent": task.progress_percent,
        }
        if has_progress
        else None,
        "schedule": getattr(task, "schedule_id", None),
        "log_total": task.log_total,
    }


class TaskListOut(Schema):
    total: int
    items: list[TaskOut]


class TaskCreateIn(Schema):
    plugin: Text = Field(..., min_length=1, max_length=100)
    params: JsonObject = Field(default_factory=dict)


class TaskListQuery(Schema):
    status: Literal["PENDING", "RUNNING", "SUCCESS", "FAILED", "CANCELLED"] | None = None
    plugin: Text | None = Field(None, max_length=100)
    user: Text | None = Field(None, max_length=150, description="Username.")
    limit: int = Field(50, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=MAX_INT)


class LogLineOut(Schema):
    seq: int
    timestamp: str
    level: str
    source: str
    message: str
    metadata: Any


class LogListOut(Schema):
    total: int
    items: list[LogLineOut]


class LogFilterQuery(Schema):
    level: Text | None = Field(None, max_length=200, description="Comma list, e.g. ERROR,WARNING.")
    min_level: Text | None = Field(None, max_length=20)
    source: Text | None = Field(None, max_length=2100, description="Comma list of sources.")
    search: Text | None = Field(None, max_length=200, description="Case-insensitive substring.")

    def to_filter(self) -> LogFilter:
        try:
            return LogFilter.parse(
                level=self.level, min_level=self.min_level, source=self.source, search=self.search
            )
        except LogFilterInvalid as exc:
            raise ApiError(422, "Invalid log filter.", errors=exc.errors) from None


class LogListQuery(LogFilterQuery):
    offset: int = Field(0, ge=0, le=MAX_INT)
    limit: int = Field(logquery.DEFAULT_LIMIT, ge=1, le=logquery.MAX_LIMIT)
    after_seq: int = Field(0, ge=0, le=MAX_INT)


class LogStatsOut(Schema):
    total: int
    by_level: dict[str, int]
    by_source: dict[str, int]


# --- access ---------------------------------------------------------------------------------


def visible_tasks(user):
    """The runs `user` may see (one helper for the API, the pages and the sockets)."""
    qs = Task.objects.select_related("user")
    if not user.has_perm("tasks_app.view_all_tasks"):
        qs = qs.filter(user=user)
    return qs


def _get_task_for_user(request: HttpRequest, task_id: uuid.UUID) -> Task:
    task = visible_tasks(request.auth).filter(pk=task_id).first()
    if task is None:
        raise ApiError(404, f"No task {task_id}.")
    return task


def _require_run_permission(request: HttpRequest) -> None:
    if not request.auth.has_perm("plugins_app.run_plugin"):
        raise ApiError(403, "You do not have permission to run plugins.")


def _start(request: HttpRequest, plugin: Plugin, params: dict) -> Task:
    try:
        return task_create(plugin=plugin, params=params, user=request.auth)
    except ParamsInvalid as exc:
        raise ApiError(422, "The parameters do not match the plugin's schema.", errors=exc.errors)
    except PluginNotRunnable as exc:
        raise ApiError(409, f"Plugin {plugin.id!r} cannot run now ({exc.reason}).")


# --- runs -------------------------------------------------------------------------------------


@router.post("", response={201: TaskOut})
def task_create_view(request: HttpRequest, payload: TaskCreateIn):
    _require_run_permission(request)
    plugin = Plugin.objects.filter(pk=payload.plugin).first()
    if plugin is None:
        raise ApiError(404, f"No plugin {payload.plugin!r}.")
    return Status(201, task_out(_start(request, plugin, payload.params)))


@router.get("", response=TaskListOut)
def task_list(request: HttpRequest, filters: Query[TaskListQuery]):
    qs = visible_tasks(request.auth)
    if filters.status:
        qs = qs.filter(status=filters.status)
    if filters.plugin:
        qs = qs.filter(plugin_id=filters.plugin)
    if filters.user:
        qs = qs.filter(user__username=filters.user)
    page = qs.order_by("-created_at")[filters.offset : filters.offset + filters.limit]
    return {"total": qs.count(), "items": [task_out(t) for t in page]}


@router.get("/{task_id}", response=TaskOut)
def task_detail(request: HttpRequest, task_id: uuid.UUID):
    return task_out(_get_task_for_user(request, task_id))


@router.post("/{task_id}/cancel", response=TaskOut)
def task_cancel_view(request: HttpRequest, task_id: uuid.UUID):
    task = _get_task_for_user(request, task_id)
    user = request.auth
    if task.user_id != user.pk and not user.has_perm("plugins_app.run_plugin"):
        raise ApiError(403, "You may not cancel this task.")
    if task.is_terminal:
        raise ApiError(409, f"Task {task.id} has already finished ({task.status}).")
    return task_out(task_cancel(task=task, user=user))


@router.post("/{task_id}/rerun", response={201: TaskOut})
def task_rerun(request: HttpRequest, task_id: uuid.UUID):
    _require_run_permission(request)
    task = _get_task_for_user(request, task_id)
    return Status(201, task_out(_start(request, task.plugin, task.params or {})))


# --- logs -----------------------------------------------------------------------------------


@router.get("/{task_id}/logs", response=LogListOut)
def task_logs(request: HttpRequest, task_id: uuid.UUID, query: Query[LogListQuery]):
    task = _get_task_for_user(request, task_id)
    total, items = logquery.log_lines(
        task, query.to_filter(), after_seq=query.after_seq, offset=query.offset, limit=query.limit
    )
    return {"total": total, "items": items}


@router.get("/{task_id}/logs/stats", response=LogStatsOut)
def task_log_stats(request: HttpRequest, task_id: uuid.UUID):
    return logquery.log_stats(_get_task_for_user(request, task_id))


@router.get("/{task_id}/logs/sources", response=list[str])
def task_log_sources(request: HttpRequest, task_id: uuid.UUID):
    return list(logquery.source_counts(_get_task_for_user(request, task_id)))


@router.get("/{task_id}/logs/download")
def task_log_download(request: HttpRequest, task_id: uuid.UUID, query: Query[LogFilterQuery]):
    """The log as text/plain, streamed in seq-ordered chunks (constant memory)."""
    task = _get_task_for_user(request, task_id)
    log_filter = query.to_filter()
    # Under ASGI Django would buffer a sync iterator whole; give it an async one there.
    if isinstance(request, ASGIRequest):
        content = logquery.aiter_log_text(task.pk, log_filter)
    else:
        content = logquery.iter_log_text(task.pk, log_filter)
    response = StreamingHttpResponse(content, content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="task-{task.pk}.log"'
    response["X-Content-Type-Options"] = "nosniff"
    return response
