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


class DaphneServer:
    """A real `daphne` process serving octopus.asgi on a free local port, against the test
    database and Redis (the same environment a worker started by the tests gets)."""

    def __init__(self, extra_env: dict[str, str] | None = None):
        self.extra_env = extra_env or {}
        self.proc = None
        self.port = 0

    def start(self, timeout: float = 30) -> DaphneServer:
        import socket
        import subprocess
        import sys
        import time

        from conftest import BASE_DIR, subprocess_env

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        env = subprocess_env(**self.extra_env)
        self.log_path = BASE_DIR / "var" / f"daphne-test-{self.port}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port),
             "octopus.asgi:application"],
            cwd=BASE_DIR, env=env, stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daphne exited early:\n{self.log_path.read_text()[-3000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("daphne did not start listening in time")

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except Exception:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:
            self._log.close()


def session_cookie(user) -> str:
    from django.test import Client

    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


async def follow_log(
    url: str,
    *,
    cookie: str,
    origin: str,
    read_delay: float = 0.0,
    max_queue: int = 16,
    timeout: float = 180,
) -> dict:
    """Follow a run's log socket like a careful client (and as the page does): check that
    frames cover consecutive seq ranges; on a gap, or when the connection drops without a
    close (1006), reconnect with `after_seq` (counted in `resyncs`). Returns the lines, the
    final status event and the resync count.

    A drop happens to a slow reader: the server closes after the final status, and daphne
    aborts a connection whose client has not answered that close within a second (autobahn's
    close handshake timeout) — with `max_queue=1` the answer waits behind unread frames."""
    import asyncio
    import json

    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosedError

    lines: list[dict] = []
    resyncs = 0
    covered = 0
    status = None

    async def run() -> None:
        nonlocal covered, resyncs, status
        while status is None:
            sep = "&" if "?" in url else "?"
            async with connect(
                f"{url}{sep}after_seq={covered}",
                additional_headers={"Cookie": cookie},
                origin=origin,
                max_queue=max_queue,
            ) as ws:
                gap = False
                try:
                    async for raw in ws:
                        if read_delay:
                            await asyncio.sleep(read_delay)
                        event = json.loads(raw)
                        if event["type"] == "lines":
                            if event["from_seq"] != covered + 1:
                                gap = True
                                break
                            lines.extend(event["lines"])
                            covered = event["to_seq"]
                        elif event["type"] == "status" and event["status"] in (
                            "SUCCESS", "FAILED", "CANCELLED"
                        ):  # fmt: skip
                            status = event
                            covered = max(covered, event.get("to_seq", covered))
                except ConnectionClosedError as exc:
                    if exc.rcvd is not None:
                        raise  # a close the server chose, with an error code: not a drop
                    gap = status is None
                if gap:
                    resyncs += 1
                elif status is None:
                    raise AssertionError("the socket closed before the final status")

    await asyncio.wait_for(run(), timeout)
    return {"lines": lines, "status": status, "resyncs": resyncs, "covered": covered}
