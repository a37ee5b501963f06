"""Task pages: the list, a run's page with its log panel, cancel and re-run.

Access goes through `_get_task_for_user`: another user's run is a 404 (unless the viewer
holds `tasks_app.view_all_tasks`), exactly as in the API and on the sockets.
"""

from __future__ import annotations

import uuid
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from plugins_app.models import Plugin
from tasks_app import logquery
from tasks_app.api import visible_tasks
from tasks_app.logquery import LogFilter, LogFilterInvalid
from tasks_app.models import LogLevel, Task, TaskLog, TaskStatus

PAGE_SIZE = 50
LOG_TAIL = 500
MAX_SEQ = 2_147_483_647


def _get_task_for_user(request, task_id: uuid.UUID) -> Task:
    """The run if the user may see it, else 404 (the same answer as a missing id)."""
    return get_object_or_404(visible_tasks(request.user).select_related("plugin"), pk=task_id)


class TaskFilterForm(forms.Form):
    status = forms.ChoiceField(choices=[("", "Any status"), *TaskStatus.choices], required=False)
    plugin = forms.CharField(required=False, max_length=100)
    user = forms.CharField(required=False, max_length=150)
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def apply(self, tasks):
        data = self.cleaned_data
        if data["status"]:
            tasks = tasks.filter(status=data["status"])
        if data["plugin"]:
            tasks = tasks.filter(plugin_id=data["plugin"])
        if data["user"]:
            tasks = tasks.filter(user__username=data["user"])
        if data["since"]:
            tasks = tasks.filter(created_at__date__gte=data["since"])
        if data["until"]:
            tasks = tasks.filter(created_at__date__lte=data["until"])
        return tasks


@login_required
@require_GET
def task_list(request):
    """Runs the user may see, newest first, 50 a page. A bad filter value answers 400 with
    the error shown and no rows. Costs a COUNT and one page query (indexes on created_at,
    status, plugin and user, each with -created_at)."""
    form = TaskFilterForm(request.GET)
    page = None
    if form.is_valid():
        tasks = form.apply(visible_tasks(request.user).select_related("plugin"))
        page = Paginator(tasks, PAGE_SIZE).get_page(request.GET.get("page"))
    query = {k: v for k, v in request.GET.items() if k != "page" and v}
    context = {
        "form": form, "page": page, "query": urlencode(query),
        "plugins": Plugin.objects.values_list("id", flat=True),
        "show_user": request.user.has_perm("tasks_app.view_all_tasks"),
    }  # fmt: skip
    template = "tasks/task_list.html#task-table" if request.htmx else "tasks/task_list.html"
    return render(request, template, context, status=400 if page is None else 200)


def _log_filter(request) -> LogFilter:
    """The panel's filter from the query string (`level` may repeat, as checkboxes send)."""
    return LogFilter.parse(
        level=",".join(request.GET.getlist("level")),
        source=request.GET.get("source"),
        search=request.GET.get("search"),
    )


def log_tail(
    task: Task, log_filter: LogFilter, *, before_seq: int | None = None, upto_seq: int | None = None
) -> list[dict]:
    """The newest LOG_TAIL matching lines with seq < before_seq and ≤ upto_seq, oldest
    first. One query reading the (task, seq) index backwards (or the level/source index for
    such filters), stopping at LOG_TAIL rows: never more rows than it shows."""
    rows = log_filter.apply(TaskLog.objects.filter(task=task))
    if before_seq is not None:
        rows = rows.filter(seq__lt=before_seq)
    if upto_seq is not None:
        rows = rows.filter(seq__lte=upto_seq)
    newest = list(rows.order_by("-seq").values(*logquery.LINE_FIELDS)[:LOG_TAIL])
    return [logquery.line_dict(row) for row in reversed(newest)]


def _log_panel(task: Task, log_filter: LogFilter, *, before_seq: int | None = None) -> dict:
    """Context for the log panel. `last_seq` is the newest stored line when we looked (read
    first, and the lines are capped at it), so the live socket's `after_seq=last_seq` misses
    nothing and repeats nothing, whatever the filter."""
    last_seq = (
        TaskLog.objects.filter(task=task).order_by("-seq").values_list("seq", flat=True).first()
    ) or 0
    lines = log_tail(task, log_filter, before_seq=before_seq, upto_seq=last_seq)
    levels = log_filter.levels or frozenset(LogLevel.values)
    query = log_filter.as_query()
    return {
        "task": task,
        "lines": lines,
        "last_seq": last_seq,
        "first_seq": lines[0]["seq"] if lines else 0,
        "has_earlier": len(lines) == LOG_TAIL and lines[0]["seq"] > 1,
        "levels": [(label, value in levels) for value, label in LogLevel.choices],
        "log_filter": log_filter,
        "filter_query": urlencode(query),
        "ws_query": urlencode({**query, "format": "html"}),
        "sources": logquery.source_counts(task),
    }


@login_required
@require_GET
def task_detail(request, task_id: uuid.UUID):
    task = _get_task_for_user(request, task_id)
    try:
        log_filter = _log_filter(request)
    except LogFilterInvalid as exc:
        messages.error(request, f"Log filter ignored: {exc}")
        log_filter = LogFilter()
    template = "tasks/task_detail.html"
    if request.htmx and request.GET.get("part") == "summary":
        # After the socket opens and when the run ends: state from the database, with the
        # source select and counters out of band.
        context = {"task": task, "log_filter": log_filter, "sources": logquery.source_counts(task)}
        return render(request, f"{template}#summary-refresh", context)
    return render(request, template, _log_panel(task, log_filter))


@login_required
@require_GET
def task_logs(request, task_id: uuid.UUID):
    """The log panel's body for a filter (HTMX), or with `before_seq` the page of lines
    before it ("load earlier"). The source select comes along out of band, as sources
    appear while a run logs. A bad filter answers 400 with the reason."""
    task = _get_task_for_user(request, task_id)
    try:
        log_filter = _log_filter(request)
        before = request.GET.get("before_seq")
        before_seq = int(before) if before else None
        if before_seq is not None and not 0 < before_seq <= MAX_SEQ:
            raise ValueError(f"before_seq must be between 1 and {MAX_SEQ}")
    except (LogFilterInvalid, ValueError) as exc:
        return render(request, "tasks/task_detail.html#log-error", {"error": exc}, status=400)
    context = _log_panel(task, log_filter, before_seq=before_seq)
    partial = "log-earlier" if before_seq is not None else "log-body"
    return render(request, f"tasks/task_detail.html#{partial}", context)


@login_required
@require_POST
def task_cancel_view(request, task_id: uuid.UUID):
    from tasks_app.services import task_cancel

    task = _get_task_for_user(request, task_id)
    if task.user_id != request.user.pk and not request.user.has_perm("plugins_app.run_plugin"):
        raise PermissionDenied("You may not cancel this task.")
    if task.is_terminal:
        messages.info(request, f"This run had already finished ({task.get_status_display()}).")
    else:
        task = task_cancel(task=task, user=request.user)
        messages.success(request, "Cancel requested." if not task.is_terminal else "Cancelled.")
    return redirect("task_detail", task_id=task.pk)


@login_required
@require_POST
def task_rerun(request, task_id: uuid.UUID):
    """Start the same plugin again with the same params; goes to the new run's page."""
    from tasks_app.services import ParamsInvalid, PluginNotRunnable, task_create

    if not request.user.has_perm("plugins_app.run_plugin"):
        raise PermissionDenied("You do not have permission to run plugins.")
    task = _get_task_for_user(request, task_id)
    try:
        new = task_create(plugin=task.plugin, params=task.params or {}, user=request.user)
    except (ParamsInvalid, PluginNotRunnable) as exc:
        messages.error(request, f"Not started again: {exc}")
        return redirect("task_detail", task_id=task.pk)
    return redirect("task_detail", task_id=new.pk)
