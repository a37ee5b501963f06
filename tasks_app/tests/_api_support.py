"""Rows for the API and socket tests: plugins, runs and their log lines, written straight to
the real database the way the worker leaves them (contiguous seq, counters on the Task)."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from plugins_app.models import Plugin
from tasks_app.models import LogLevel, Task, TaskLog, TaskStatus

LEVEL_FIELDS = {10: "log_debug", 20: "log_info", 30: "log_warning", 40: "log_error"}


def make_plugin(plugin_id: str = "hello", **fields) -> Plugin:
    defaults = {
        "name": plugin_id.replace("-", " ").title(),
        "summary": f"The {plugin_id} plugin.",
        "file_path": f"{plugin_id.replace('-', '_')}.py",
        "sha256": "a" * 64,
        "md5": "b" * 32,
        "is_active": True,
        "params_schema": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "times": {"type": "integer"}},
            "required": ["name"],
        },
        "takes_context": True,
    }
    defaults.update(fields)
    return Plugin.objects.create(id=plugin_id, **defaults)


def make_task(plugin: Plugin, user, *, status: str = TaskStatus.SUCCESS, **fields) -> Task:
    return Task.objects.create(
        plugin=plugin, user=user, status=status, params={"name": "x"}, **fields
    )


def add_lines(task: Task, lines: list[tuple[str, str, str]]) -> None:
    """Append (level name, source, message) lines after the task's last seq and keep the
    Task's counters in step, as the log writer does."""
    start = task.log_total
    now = timezone.now()
    rows = []
    for i, (level, source, message) in enumerate(lines, start=1):
        rows.append(
            TaskLog(
                task=task,
                seq=start + i,
                timestamp=now + timedelta(milliseconds=start + i),
                level=LogLevel.from_name(level),
                source=source,
                message=message,
                metadata={"i": start + i},
            )
        )
    TaskLog.objects.bulk_create(rows, batch_size=2000)
    task.log_total += len(rows)
    for row in rows:
        field = LEVEL_FIELDS[row.level]
        setattr(task, field, getattr(task, field) + 1)
    task.save(update_fields=["log_total", *LEVEL_FIELDS.values()])
