"""The dashboard: the last 24 hours at a glance."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.decorators import login_required
from django.db.models import Count
from django.db.models.functions import TruncHour
from django.shortcuts import render
from django.utils import timezone

from tasks_app.api import visible_tasks
from tasks_app.models import TaskStatus

HOURS = 24
CHART_ORDER = [TaskStatus.SUCCESS, TaskStatus.FAILED, TaskStatus.CANCELLED,
               TaskStatus.RUNNING, TaskStatus.PENDING]  # fmt: skip
BAR_WIDTH, CHART_HEIGHT = 20, 120


def hourly_chart(rows, now) -> dict:
    """Bars for an SVG chart of runs per hour by status, oldest hour first.

    `rows` are `{"hour", "status", "n"}` dicts; each bar is a stack of segments with
    pixel geometry, so the template only draws rectangles."""
    end = now.replace(minute=0, second=0, microsecond=0)
    hours = [end - timedelta(hours=HOURS - 1 - i) for i in range(HOURS)]
    per_hour = {h: dict.fromkeys(CHART_ORDER, 0) for h in hours}
    for row in rows:
        hour = row["hour"]
        if hour in per_hour and row["status"] in per_hour[hour]:
            per_hour[hour][row["status"]] += row["n"]
    peak = max([sum(c.values()) for c in per_hour.values()] + [1])
    bars = []
    for i, hour in enumerate(hours):
        y = CHART_HEIGHT
        segments = []
        for status in CHART_ORDER:
            n = per_hour[hour][status]
            if n:
                height = max(1.0, CHART_HEIGHT * n / peak)
                y -= height
                segments.append({"status": status, "n": n, "y": round(y, 1),
                                 "height": round(height, 1)})  # fmt: skip
        bars.append({"hour": hour, "x": i * BAR_WIDTH, "segments": segments,
                     "total": sum(per_hour[hour].values()), "label": i % 6 == 0})  # fmt: skip
    return {"bars": bars, "peak": peak, "width": HOURS * BAR_WIDTH, "height": CHART_HEIGHT,
            "bar_width": BAR_WIDTH - 4, "statuses": CHART_ORDER}  # fmt: skip


@login_required
def dashboard(request):
    """Counts by status and runs per hour over the last 24 h, runs going on now, recent
    failures — of the runs the user may see. Four small queries on the created_at and
    status indexes. `?part=running` (HTMX polling) renders only the running list."""
    now = timezone.now()
    tasks = visible_tasks(request.user).select_related("plugin")
    running = tasks.filter(status=TaskStatus.RUNNING).order_by("-created_at")[:20]
    if request.htmx and request.GET.get("part") == "running":
        return render(request, "dashboard.html#running", {"running": running})
    recent = tasks.filter(created_at__gte=now - timedelta(hours=HOURS))
    by_status = dict(recent.order_by().values_list("status").annotate(n=Count("pk")))
    hourly = (
        recent.annotate(hour=TruncHour("created_at")).order_by()
        .values("hour", "status").annotate(n=Count("pk"))
    )  # fmt: skip
    context = {
        "counts": [(value, label, by_status.get(value, 0)) for value, label in TaskStatus.choices],
        "total": sum(by_status.values()),
        "running": running,
        "failures": tasks.filter(status=TaskStatus.FAILED).order_by("-created_at")[:10],
        "chart": hourly_chart(hourly, now),
    }
    return render(request, "dashboard.html", context)
