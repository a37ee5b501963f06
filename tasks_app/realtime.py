"""The only module that talks to the channel layer: group names, payload shapes, sending.

The database is the truth and these messages are hints: they are sent after the rows they
describe are committed, and a client that missed some (channels-redis drops messages when a
channel is full) asks the API for lines `after_seq`. Nothing here raises into the caller — a
worker must keep running when Redis hiccups; failures are logged and forgotten.

Payloads (`type` is the consumer method, Channels-style):
- `{"type": "log.lines", "task_id", "lines": [{"seq", "timestamp", "level", "source",
  "message", "metadata"}, …]}` — at most `FRAME_MAX_LINES` lines / ~`FRAME_MAX_CHARS` chars a
  frame, in seq order;
- `{"type": "task.progress", "task_id", "done", "total", "message", "percent"}`;
- `{"type": "task.status", "task_id", "status", "error", "started_at", "finished_at",
  "log_total"}`.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)

FRAME_MAX_LINES = 500
FRAME_MAX_CHARS = 256 * 1024


def task_logs_group(task_id: uuid.UUID | str) -> str:
    """`task-<uuid hex>-logs`: the group a task page's socket joins."""
    return f"task-{uuid.UUID(str(task_id)).hex}-logs"


TASK_LIST_ALL_GROUP = "tasks-all"


def task_list_group(user_id: int | None) -> str:
    """The live task list's group: `tasks-user-<id>` carries one user's runs; `tasks-all`
    (user_id None) carries every run, for users who may see them all."""
    return TASK_LIST_ALL_GROUP if user_id is None else f"tasks-user-{int(user_id)}"


def _publish_task_list(task) -> None:
    """`{"type": "task.list.status", "task_id", "plugin", "user_id", "status", "started_at",
    "finished_at", "progress_percent"}` to the owner's and the all-runs task-list groups."""
    event = {
        "type": "task.list.status",
        "task_id": str(task.pk),
        "plugin": task.plugin_id,
        "user_id": task.user_id,
        "status": task.status,
        "started_at": task.started_at.isoformat() if task.started_at else None,
        "finished_at": task.finished_at.isoformat() if task.finished_at else None,
        "progress_percent": task.progress_percent,
    }
    groups = [TASK_LIST_ALL_GROUP]
    if task.user_id is not None:
        groups.append(task_list_group(task.user_id))
    if get_channel_layer() is None:
        return
    try:
        async_to_sync(_send_groups)(groups, event)
    except Exception:
        logger.warning("could not publish the task list change for %s", task.pk, exc_info=True)


async def _send_groups(groups: list[str], event: dict) -> None:
    layer = get_channel_layer()
    for group in groups:
        await layer.group_send(group, event)


def _frames(task_id: str, lines: list[dict]) -> list[dict]:
    frames: list[dict] = []
    current: list[dict] = []
    size = 0
    for line in lines:
        length = len(line["message"]) + 100
        if current and (len(current) >= FRAME_MAX_LINES or size + length > FRAME_MAX_CHARS):
            frames.append({"type": "log.lines", "task_id": task_id, "lines": current})
            current, size = [], 0
        current.append(line)
        size += length
    if current:
        frames.append({"type": "log.lines", "task_id": task_id, "lines": current})
    return frames


async def _send_all(group: str, messages: list[dict]) -> None:
    layer = get_channel_layer()
    for message in messages:
        await layer.group_send(group, message)


def _send(task_id: Any, messages: list[dict]) -> bool:
    """Send in one event-loop round (one Redis connection for all frames). False on error."""
    if not messages or get_channel_layer() is None:
        return False
    try:
        async_to_sync(_send_all)(task_logs_group(task_id), messages)
        return True
    except Exception:
        logger.warning("could not publish to the channel layer for task %s", task_id, exc_info=True)
        return False


def publish_log_lines(task_id: Any, lines: list[dict]) -> bool:
    """Announce stored lines (dicts with seq, timestamp ISO, level name, source, message,
    metadata). Costs one Redis round-trip per frame; returns False if it failed."""
    return _send(task_id, _frames(str(task_id), lines))


def publish_progress(task) -> bool:
    return _send(
        task.pk,
        [
            {
                "type": "task.progress",
                "task_id": str(task.pk),
                "done": task.progress_done,
                "total": task.progress_total,
                "message": task.progress_message,
                "percent": task.progress_percent,
            }
        ],
    )


def publish_status(task) -> bool:
    """Announce the task's current status; call it after the status row is committed.
    Also tells the live task lists (`task_list_group`) that may show this run."""
    _publish_task_list(task)
    return _send(
        task.pk,
        [
            {
                "type": "task.status",
                "task_id": str(task.pk),
                "status": task.status,
                "error": task.error,
                "started_at": task.started_at.isoformat() if task.started_at else None,
                "finished_at": task.finished_at.isoformat() if task.finished_at else None,
                "log_total": task.log_total,
            }
        ],
    )
