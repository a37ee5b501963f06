"""WebSockets: a run's live log (`ws/tasks/<uuid>/logs/`) and the live task list (`ws/tasks/`).

Dumb by design: they check access before `accept()`, join groups named by `realtime.py`,
read the database to catch up, and forward frames. They never write.

Who: the session user, or a script sending `Authorization: Bearer <token>` in the handshake
(with an Origin from ALLOWED_HOSTS, which the ASGI stack requires of every socket).

Log socket protocol (`?level=&min_level=&source=&search=&format=json|html&after_seq=`):
- `{"type": "lines", "from_seq", "to_seq", "lines": [...]}`: every line with
  from_seq ≤ seq ≤ to_seq that passes the filter. Consecutive frames cover consecutive
  ranges (next from_seq = previous to_seq + 1), so a client sees a gap without knowing the
  filter. First the backlog after `after_seq` (from the database), then live lines.
- `{"type": "progress", "done", "total", "message", "percent"}`
- `{"type": "status", "status", "error", "started_at", "finished_at", "log_total"}`; when
  the status is terminal it comes after the last line (to_seq = log_total), and the server
  closes the socket (1000).
- `{"type": "error", "detail", "errors"}` then close 4400 for a bad query string.
A client may send `{"action": "resync", "after_seq": n}` to have lines after n sent again;
reconnecting with `?after_seq=n` does the same. Live frames the channel layer dropped (a
full channel) are noticed by the seq jump and filled from the database before going on.

With `format=html` the same events arrive as HTML fragments for htmx's ws extension
(out-of-band swaps rendered from `templates/tasks/_log_lines.html`), text escaped.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.template.loader import render_to_string
from django.utils.html import format_html

from tasks_app import logquery, realtime
from tasks_app.logquery import LogFilter, LogFilterInvalid
from tasks_app.models import TERMINAL_STATUSES, Task, TaskStatus

FRAME_LINES = 500
MAX_SEQ = 2_147_483_647


def _token_user(scope):
    """The user of an `Authorization: Bearer <token>` handshake header, or None (scripts;
    browsers use the session)."""
    from accounts_app.models import ApiToken

    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, raw = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and raw.strip():
                return ApiToken.authenticate(raw.strip())
            return None
    return None


async def socket_user(scope):
    """The session user, else the Bearer-token user, else None."""
    user = scope.get("user")
    if user is not None and user.is_authenticated:
        return user
    return await database_sync_to_async(_token_user)(scope)


def _visible_task(user, task_id) -> Task | None:
    from tasks_app.api import visible_tasks

    return visible_tasks(user).filter(pk=task_id).first()


def _task_state(task_id) -> dict | None:
    return (
        Task.objects.filter(pk=task_id)
        .values("status", "error", "started_at", "finished_at", "log_total")
        .first()
    )


def _chunk(task_id, log_filter: LogFilter, after: int, upto: int) -> list[dict]:
    return next(
        logquery.iter_log_lines(
            task_id, log_filter, after_seq=after, upto_seq=upto, chunk=FRAME_LINES
        ),
        [],
    )


def _status_event(state: dict) -> dict:
    def iso(value):
        return value.isoformat() if hasattr(value, "isoformat") else value

    return {
        "type": "status",
        "status": state["status"],
        "error": state.get("error", ""),
        "started_at": iso(state.get("started_at")),
        "finished_at": iso(state.get("finished_at")),
        "log_total": state.get("log_total", 0),
    }


def _query_params(scope) -> dict[str, str]:
    raw = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    return {key: values[-1] for key, values in raw.items()}


class TaskLogConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        user = await socket_user(self.scope)
        if user is None:
            await self.close()
            return
        task = await database_sync_to_async(_visible_task)(
            user, self.scope["url_route"]["kwargs"]["task_id"]
        )
        if task is None:
            await self.close()
            return
        self.task_id = task.pk
        self.group = None
        params = _query_params(self.scope)
        self.html = params.get("format", "json") == "html"
        try:
            self.log_filter, after_seq = self._parse(params)
        except LogFilterInvalid as exc:
            await self.accept()
            await self.send(
                text_data=json.dumps(
                    {"type": "error", "detail": "Invalid query.", "errors": exc.errors}
                )
            )
            await self.close(code=4400)
            return
        # Join before reading, so every line committed after the read is also published to us.
        self.group = realtime.task_logs_group(task.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        # last_seq: every line ≤ it has been considered (sent or filtered out).
        # sent_upto: the to_seq of the last frame, so frames cover consecutive ranges.
        self.last_seq = self.sent_upto = after_seq
        self.finished = False
        state = await database_sync_to_async(_task_state)(task.pk)
        if state is None:
            await self.close()
            return
        await self._catch_up(state["log_total"])
        if state["status"] in TERMINAL_STATUSES:
            await self._finish(state)

    def _parse(self, params: dict[str, str]) -> tuple[LogFilter, int]:
        log_filter = LogFilter.parse(
            level=params.get("level"),
            min_level=params.get("min_level"),
            source=params.get("source"),
            search=params.get("search"),
        )
        errors: dict[str, list[str]] = {}
        if params.get("format", "json") not in ("json", "html"):
            errors["format"] = ["use json or html"]
        after_seq = 0
        raw = params.get("after_seq", "") or "0"
        if not raw.isdigit() or int(raw) > MAX_SEQ:
            errors["after_seq"] = ["must be a whole number ≥ 0"]
        else:
            after_seq = int(raw)
        if errors:
            raise LogFilterInvalid(errors)
        return log_filter, after_seq

    async def disconnect(self, code) -> None:
        if getattr(self, "group", None):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    # --- from the client -------------------------------------------------------------------

    async def receive(self, text_data=None, bytes_data=None) -> None:
        try:
            message = json.loads(text_data or "")
            after = int(message["after_seq"])
            if message.get("action") != "resync" or not 0 <= after <= MAX_SEQ:
                raise ValueError
        except (ValueError, KeyError, TypeError):
            await self._send_event(
                {
                    "type": "error",
                    "detail": 'Send {"action": "resync", "after_seq": n}.',
                    "errors": {},
                }
            )
            return
        # Send lines (after, last_seq] again; live frames go on after them.
        upto = self.last_seq
        self.sent_upto = self.last_seq = min(after, upto)
        await self._catch_up(upto)

    # --- from the channel layer (realtime.py) ---------------------------------------------

    async def log_lines(self, event: dict) -> None:
        lines = event.get("lines") or []
        if self.finished or not lines:
            return
        first = lines[0]["seq"]
        if first > self.last_seq + 1:
            # Frames were dropped (full channel) or published out of order: the database has
            # them (lines are published after they are committed).
            await self._catch_up(first - 1)
        fresh = [line for line in lines if line["seq"] > self.last_seq]
        if fresh:
            await self._forward(fresh, upto=fresh[-1]["seq"])

    async def task_progress(self, event: dict) -> None:
        if not self.finished:
            await self._send_event(
                {
                    "type": "progress",
                    **{k: event.get(k) for k in ("done", "total", "message", "percent")},
                }
            )

    async def task_status(self, event: dict) -> None:
        if self.finished:
            return
        if event.get("status") in TERMINAL_STATUSES:
            await self._catch_up(int(event.get("log_total") or 0))
            await self._finish(event)
        else:
            await self._send_event(_status_event(event))

    # --- sending ---------------------------------------------------------------------------

    async def _catch_up(self, upto: int) -> None:
        """Send, from the database, the matching lines with last_seq < seq ≤ upto."""
        while self.last_seq < upto:
            rows = await database_sync_to_async(_chunk)(
                self.task_id, self.log_filter, self.last_seq, upto
            )
            if len(rows) < FRAME_LINES:
                await self._send_lines(rows, upto=upto)
                return
            await self._send_lines(rows, upto=rows[-1]["seq"])

    async def _forward(self, lines: list[dict], *, upto: int) -> None:
        if not self.log_filter.is_empty:
            lines = [line for line in lines if self.log_filter.matches(line)]
        await self._send_lines(lines, upto=upto)

    async def _send_lines(self, lines: list[dict], *, upto: int) -> None:
        self.last_seq = max(self.last_seq, upto)
        if not lines:
            return  # the next frame's from_seq covers the skipped range
        frame = {"type": "lines", "from_seq": self.sent_upto + 1, "to_seq": upto, "lines": lines}
        self.sent_upto = upto
        await self._send_event(frame)

    async def _finish(self, state: dict) -> None:
        self.finished = True
        event = _status_event(state)
        if self.sent_upto < self.last_seq:
            # Tell a filtering client the rest of the range was considered.
            event["to_seq"] = self.last_seq
        await self._send_event(event)
        await self.close(code=1000)

    async def _send_event(self, event: dict) -> None:
        if self.html:
            await self.send(text_data=render_html(self.task_id, event))
        else:
            await self.send(text_data=json.dumps(event))


def render_html(task_id, event: dict) -> str:
    """An event as the HTML fragment the task page swaps in out of band — the page's own
    partials (templates/tasks/_log_lines.html, _task_fragments.html), text escaped."""
    kind = event["type"]
    if kind == "lines":
        return render_to_string(
            "tasks/_log_lines.html#log-frame", {"task_id": task_id, "lines": event["lines"]}
        )
    if kind in ("progress", "status"):
        status = event.get("status") or "RUNNING"
        task = SimpleNamespace(
            pk=task_id,
            status=status,
            get_status_display=TaskStatus(status).label if status in TaskStatus.values else status,
            is_terminal=status in TERMINAL_STATUSES,
            progress_done=event.get("done"),
            progress_total=event.get("total"),
            progress_message=event.get("message") or "",
            progress_percent=event.get("percent", event.get("progress_percent")),
        )
        name = "progress" if kind == "progress" else "status-badge"
        return render_to_string(f"tasks/_task_fragments.html#{name}", {"task": task, "oob": True})
    return format_html(
        '<div id="task-{}-socket-error" class="socket-error" hx-swap-oob="true">{}</div>',
        task_id,
        event.get("detail", ""),
    )


class TaskListConsumer(AsyncWebsocketConsumer):
    """`ws/tasks/`: status changes of every run the user may see."""

    async def connect(self) -> None:
        user = await socket_user(self.scope)
        if user is None:
            await self.close()
            return
        sees_all = await database_sync_to_async(user.has_perm)("tasks_app.view_all_tasks")
        self.html = _query_params(self.scope).get("format", "json") == "html"
        self.group = realtime.task_list_group(None if sees_all else user.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code) -> None:
        if getattr(self, "group", None):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def task_list_status(self, event: dict) -> None:
        payload = {k: v for k, v in event.items() if k != "type"}
        payload["type"] = "status"
        if self.html:
            await self.send(text_data=render_html(payload["task_id"], payload))
        else:
            await self.send(text_data=json.dumps(payload))
