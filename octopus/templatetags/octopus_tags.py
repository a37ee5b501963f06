"""Template filters the pages share."""

from __future__ import annotations

import json

from django import template
from django.utils.html import format_html
from django.utils.safestring import mark_safe

register = template.Library()


@register.filter
def pretty_json(value) -> str:
    """A JSON value as indented text (escaped by the template like any other string)."""
    try:
        return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError):
        return str(value)


@register.filter
def paragraphs(text: str) -> list[str]:
    """Docstring text as paragraphs: blank lines split them, hard-wrapped lines are joined."""
    blocks = (block.strip() for block in str(text or "").split("\n\n"))
    return [" ".join(line.strip() for line in block.splitlines()) for block in blocks if block]


# Row-level fragments as tags: the task list draws 50 rows and the log panel 500 lines, and a
# tag that builds one escaped string (format_html) costs a fraction of an {% include %} or of
# a dozen variable nodes per row. The named partials call these, so the page and the live
# socket still render the same markup.


@register.simple_tag
def log_line(line: dict) -> str:
    """One log line (a `logquery.line_dict`); every value is escaped by format_html."""
    timestamp = str(line["timestamp"])
    return format_html(
        '<div class="log-line lvl-{}" data-seq="{}"><span class="log-seq">{}</span>'
        '<time title="{}">{}</time><span class="log-level">{}</span>'
        '<span class="log-source">{}</span><span class="log-msg">{}</span></div>\n',
        line["level"], line["seq"], line["seq"], timestamp, timestamp[11:23], line["level"],
        line["source"], line["message"],
    )  # fmt: skip


@register.simple_tag
def status_badge(task, oob: bool = False) -> str:
    """The run's status badge with its stable id `task-<id>-status`."""
    label = getattr(task, "get_status_display", task.status)
    label = label() if callable(label) else label
    return format_html(
        '<span id="task-{}-status" class="badge st-{}"{}>{}</span>',
        task.pk, task.status, mark_safe(' hx-swap-oob="true"') if oob else "", label or task.status,
    )  # fmt: skip


@register.simple_tag
def duration(task) -> str:
    """How long the run took (or has taken so far): "4.2 s", "3 min", "2 h", or a dash."""
    elapsed = task.duration
    if elapsed is None:
        return mark_safe('<span class="muted">—</span>')  # a constant: nothing to escape
    seconds = elapsed.total_seconds()
    if seconds < 60:
        text = f"{seconds:.1f} s"
    elif seconds < 3600:
        text = f"{round(seconds / 60)} min"
    else:
        text = f"{round(seconds / 3600)} h"
    return format_html('<span title="{}">{}</span>', str(elapsed).split(".")[0], text)
