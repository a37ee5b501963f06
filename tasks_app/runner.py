"""Running one task inside a Celery worker: claim, verify, fork, supervise, store, finish.

`execute_task(task_id)` is what the Celery task calls. The shape of a run:

1. Claim it: `Task.mark_running()` is a compare-and-set PENDING→RUNNING. A duplicate delivery
   (or a redelivery after a worker died, or a task cancelled while queued) finds nothing to
   claim and returns without touching anything.
2. Refuse (FAILED, saying why) a plugin that is no longer active, missing or broken: it
   may have changed while the run waited in the queue. Read the plugin file once, hash the
   bytes, refuse (FAILED, saying both hashes) if the sha256 differs from the registered one.
   The plugin runs from exactly these bytes.
3. Fork a plugin process (`context.child_main`). Running the plugin in its own process is
   what makes forced stops real: a `while True: pass` that ignores `context.cancelled` and
   the soft time limit is SIGKILLed, and the worker process survives to store its last lines
   and the final status. The plugin process dies with the worker (PR_SET_PDEATHSIG).
4. Supervise: a reader thread turns pipe frames into batches on a bounded queue; the main
   thread numbers lines (seq 1, 2, 3 … assigned here, so a killed plugin can never leave a
   gap), writes them in batches (`LogSink`), refreshes the heartbeat, polls for cancel
   requests every 0.5 s, and enforces the time limits.
5. After the plugin process has exited and every line is stored, write the final status
   (compare-and-set from RUNNING: if the reaper got there first, its verdict stands), then
   publish it.

Policy for a lost worker: the reaper marks the run FAILED "worker lost"; it is never re-run
automatically (plugins are arbitrary code and may not be idempotent). Re-running is a user
decision.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import mmap
import os
import pickle
import queue
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import F

from tasks_app import realtime
from tasks_app.context import HEADER, child_main, flush_std_streams
from tasks_app.models import LogLevel, Task, TaskLog, TaskStatus
from tasks_app.services import PluginNotRunnable, plugin_not_runnable_reason

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.5
LEVEL_NAMES = {level.value: level.label for level in LogLevel}
LEVEL_COUNTERS = {10: "log_debug", 20: "log_info", 30: "log_warning", 40: "log_error"}
SYSTEM = "system"
_EOF = object()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Stamps:
    """Epoch seconds → ISO 8601 UTC text with millisecond precision (stdlib logging's own
    precision), cached per millisecond: at thousands of lines a second most lines share their
    millisecond with the line before, so the text is built once for many lines. The same text
    feeds the COPY, SQLite and the live frames."""

    def __init__(self) -> None:
        self.milli: int | None = None
        self.text = ""

    def iso(self, ts: float) -> str:
        milli = int(ts * 1000)
        if milli != self.milli:
            self.milli = milli
            second, ms = divmod(milli, 1000)
            stamp = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self.text = f"{stamp}.{ms:03d}+00:00"
        return self.text


class LogSink:
    """Numbers log lines and writes them in batches; keeps the Task's counters in step.

    `write(items)` is one transaction: PostgreSQL `COPY … FROM STDIN` (psycopg 3) or a
    multi-row insert on SQLite, plus one UPDATE of the counters (F expressions, so readers
    never count rows). After the commit the lines are published to the channel layer.
    A transient database error is retried with backoff (the plugin meanwhile waits on its
    full buffer); the batch is one transaction, so a retry cannot duplicate a seq."""

    RETRIES = 6

    def __init__(self, task: Task):
        self.task_id = task.pk
        self.seq = task.log_total  # a fresh claim has 0 lines; kept general anyway
        self.publish = True
        self.stamps = _Stamps()

    def write(self, items: list[tuple]) -> None:
        if not items:
            return
        first = self.seq + 1
        rows = []
        counts = {10: 0, 20: 0, 30: 0, 40: 0}
        # The plugin process already capped long messages (marker included, so a little over
        # the limit); this catches NULs and anything that bypassed it.
        limit = TaskLog.MESSAGE_LIMIT + 100
        clean = TaskLog.clean_message
        iso = self.stamps.iso
        seq = self.seq
        for ts, level, source, message, meta in items:
            seq += 1
            if len(message) > limit or "\x00" in message:
                message = clean(message)
            if "\x00" in source:
                source = source.replace("\x00", "")
            if level not in counts:
                level = LogLevel.from_number(level).value
            counts[level] += 1
            rows.append((seq, iso(ts), level, source, message, meta))
        delay = 0.5
        for attempt in range(self.RETRIES):
            try:
                with transaction.atomic():
                    self._insert(rows)
                    Task.objects.filter(pk=self.task_id).update(
                        log_total=F("log_total") + len(rows),
                        **{LEVEL_COUNTERS[lv]: F(LEVEL_COUNTERS[lv]) + n
                           for lv, n in counts.items() if n},
                    )  # fmt: skip
                break
            except OperationalError:
                if attempt == self.RETRIES - 1:
                    raise
                logger.warning("log batch for %s failed; retrying in %.1fs", self.task_id, delay)
                connection.close()
                time.sleep(delay)
                delay *= 2
        self.seq = seq
        if self.publish:
            realtime.publish_log_lines(
                self.task_id,
                [
                    {"seq": s, "timestamp": ts, "level": LEVEL_NAMES[lv],
                     "source": src, "message": msg, "metadata": meta}
                    for s, ts, lv, src, msg, meta in rows
                ],
            )  # fmt: skip
        assert self.seq == first + len(rows) - 1

    def _insert(self, rows: list[tuple]) -> None:
        table = TaskLog._meta.db_table
        columns = "task_id, seq, timestamp, level, source, message, metadata"
        if connection.vendor == "postgresql":
            task_id = str(self.task_id)  # text once, not a UUID adapted per row
            with connection.cursor() as cursor:
                raw = cursor.cursor  # the psycopg 3 cursor under Django's wrapper
                with raw.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                    write_row = copy.write_row
                    for seq, ts, level, source, message, meta in rows:
                        write_row((task_id, seq, ts, level, source, message, meta))
        else:
            # SQLite stores UUIDs as 32 hex chars and datetimes as naive UTC text; this is
            # what Django's own adapters produce, without their per-value overhead.
            task_id = self.task_id.hex
            values = [
                (task_id, seq, f"{ts[:10]} {ts[11:23]}", level, source, msg, meta)
                for seq, ts, level, source, msg, meta in rows
            ]
            with connection.cursor() as cursor:
                cursor.executemany(
                    f"INSERT INTO {table} ({columns}) VALUES (%s, %s, %s, %s, %s, %s, %s)", values
                )


def _reader(fd: int, out: queue.Queue) -> None:
    """Pipe → queue of item lists. `out` is bounded, so a slow database stops this thread
    reading, the pipe fills, and the plugin's buffer applies backpressure."""
    stream = os.fdopen(fd, "rb", buffering=1 << 16)
    try:
        while True:
            header = stream.read(HEADER.size)
            if len(header) < HEADER.size:
                break
            (length,) = HEADER.unpack(header)
            data = stream.read(length)
            if len(data) < length:
                break
            out.put(pickle.loads(data))
    except Exception:
        logger.exception("reading the plugin pipe failed")
    finally:
        stream.close()
        out.put(_EOF)


class Run:
    """One claimed, RUNNING task being executed by this process (see the module docstring)."""

    def __init__(self, task: Task):
        self.task = task
        self.sink = LogSink(task)
        self.pending: list[tuple] = []
        self.flush_lines = settings.LOG_FLUSH_MAX_LINES
        self.flush_interval = settings.LOG_FLUSH_INTERVAL_MS / 1000
        plugin_timeout = task.plugin.timeout
        self.timeout = plugin_timeout if plugin_timeout else settings.TASK_DEFAULT_TIMEOUT
        self.pid: int | None = None
        self.exit_status: int | None = None
        self.cancel_seen = False
        self.timed_out = False
        self.taken_away = False  # someone else (the reaper) finished the task meanwhile
        self.killed_because = ""
        self.outcome: dict | None = None
        self.progress: tuple | None = None

    # -- log lines of the engine itself -------------------------------------------------------
    def system(self, level: int, message: str, **metadata) -> None:
        import json

        meta = json.dumps(metadata, default=str) if metadata else None
        self.pending.append((time.time(), level, SYSTEM, message, meta))

    def flush(self) -> None:
        items, self.pending = self.pending, []
        self.sink.write(items)
        if self.progress is not None:
            self._store_progress()

    def _store_progress(self) -> None:
        done, total, message = self.progress
        self.progress = None
        Task.objects.filter(pk=self.task.pk).update(
            progress_done=done, progress_total=total, progress_message=message
        )
        self.task.progress_done, self.task.progress_total = done, total
        self.task.progress_message = message
        realtime.publish_progress(self.task)

    # -- the run -------------------------------------------------------------------------------
    def execute(self) -> str:
        """Run to completion; returns the final status as stored."""
        try:
            source = self._load_source()
            if source is not None:
                self._supervise(source)
        except Exception as exc:
            logger.exception("run %s failed inside the worker", self.task.pk)
            self._kill("internal error")
            self.outcome = {"status": TaskStatus.FAILED, "result": None,
                            "error": f"internal error in the worker: {exc}",
                            "traceback": ""}  # fmt: skip
            with contextlib.suppress(Exception):
                self.system(40, f"internal error in the worker: {exc}")
        finally:
            self._finish()
        return self.task.status

    def _load_source(self) -> bytes | None:
        plugin = self.task.plugin
        path = Path(settings.PLUGINS_FOLDER) / plugin.file_path
        self.system(
            20, f"started {plugin.pk} on {self.task.worker}", worker=self.task.worker,
            attempt=self.task.attempt, timeout=self.timeout or None,
        )  # fmt: skip
        reason = plugin_not_runnable_reason(plugin)
        if reason:
            return self._refuse(
                f"not run: {PluginNotRunnable(plugin, reason)} (it changed after the run was "
                "queued)"
            )
        try:
            source = path.read_bytes()
        except OSError as exc:
            return self._refuse(f"cannot read the plugin file {path}: {exc.strerror or exc}")
        digest = sha256_hex(source)
        if digest != plugin.sha256:
            return self._refuse(
                f"plugin file changed on disk: sha256 {digest} does not match the registered "
                f"{plugin.sha256 or '(none)'}; refusing to run it (rediscover plugins to "
                "register the new version)"
            )
        if self.task.plugin_sha256 and self.task.plugin_sha256 != digest:
            self.system(
                30, f"running sha256 {digest[:12]}; the run was requested for "
                f"{self.task.plugin_sha256[:12]}",
            )  # fmt: skip
        return source

    def _refuse(self, error: str) -> None:
        self.system(40, error)
        self.outcome = {"status": TaskStatus.FAILED, "result": None, "error": error,
                        "traceback": ""}  # fmt: skip
        return None

    def _supervise(self, source: bytes) -> None:
        plugin = self.task.plugin
        path = str(Path(settings.PLUGINS_FOLDER) / plugin.file_path)
        flag = mmap.mmap(-1, 1)  # shared with the child: its `context.cancelled`
        read_fd, write_fd = os.pipe()
        user = self.task.user
        self.flush()
        flush_std_streams()
        pid = os.fork()
        if pid == 0:  # the plugin process
            os.close(read_fd)
            child_main(
                write_fd=write_fd, flag=flag, source_bytes=source, path=path,
                module_name="octopus_plugin_" + plugin.pk.replace("-", "_"),
                plugins_folder=str(settings.PLUGINS_FOLDER), task_id=str(self.task.pk),
                params=dict(self.task.params or {}), user=user,
                max_lines=settings.LOG_BUFFER_MAX_LINES,
            )  # fmt: skip
        self.pid = pid
        os.close(write_fd)
        batches: queue.Queue = queue.Queue(maxsize=4)
        reader = threading.Thread(target=_reader, args=(read_fd, batches), daemon=True)
        reader.start()
        started = time.monotonic()
        soft_deadline = started + self.timeout if self.timeout else None
        hard_deadline: float | None = None
        cancel_deadline: float | None = None
        last_flush = started
        next_poll = started + POLL_SECONDS
        next_beat = started + settings.TASK_HEARTBEAT_SECONDS
        eof_deadline: float | None = None
        while True:
            try:
                batch = batches.get(timeout=0.1)
            except queue.Empty:
                batch = None
            if batch is _EOF:
                break
            now = time.monotonic()
            if batch:
                self._take(batch)
                if eof_deadline:
                    # Still draining what the plugin wrote before it exited: keep going.
                    eof_deadline = now + 2
            if (self.pending or self.progress) and (
                len(self.pending) >= self.flush_lines or now - last_flush >= self.flush_interval
            ):
                self.flush()
                last_flush = now
            if now < next_poll:
                continue
            next_poll = now + POLL_SECONDS
            if self.exit_status is None:
                self._reap_child()
                if self.exit_status is not None:
                    # The pipe closes with the process. Only if it stays open with nothing
                    # arriving for 2 s (a process the plugin forked holds it) stop waiting.
                    eof_deadline = now + 2
            elif eof_deadline and now > eof_deadline:
                break
            if now >= next_beat:
                next_beat = now + settings.TASK_HEARTBEAT_SECONDS
                if not self.task.beat():
                    self.taken_away = True
            status, cancel_requested = (
                Task.objects.filter(pk=self.task.pk)
                .values_list("status", "cancel_requested_at")
                .first()
            )
            if status != TaskStatus.RUNNING:
                self.taken_away = True
            if self.taken_away and self.exit_status is None:
                self.system(40, f"the task was marked {status} meanwhile; stopping the plugin")
                self._kill("taken away")
            if cancel_requested and not self.cancel_seen:
                self.cancel_seen = True
                flag[0] = 1
                grace = settings.TASK_CANCEL_GRACE_SECONDS
                cancel_deadline = now + grace
                self.system(30, f"cancellation requested; the plugin has {grace}s to stop")
            if cancel_deadline and now >= cancel_deadline and self.exit_status is None:
                self.system(
                    30, "the plugin did not stop within the grace period after the cancel "
                    "request; terminated"
                )  # fmt: skip
                self._kill("cancelled")
                cancel_deadline = None
            if soft_deadline and now >= soft_deadline and not self.timed_out:
                self.timed_out = True
                flag[0] = 2
                grace = settings.TASK_TIME_LIMIT_GRACE_SECONDS
                hard_deadline = now + grace
                self.system(40, f"time limit of {self.timeout}s reached; stopping the plugin "
                            f"(killed in {grace}s if it does not stop)")  # fmt: skip
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGUSR1)
            if hard_deadline and now >= hard_deadline and self.exit_status is None:
                self.system(40, "the plugin did not stop after its time limit; killed")
                self._kill("timed out")
                hard_deadline = None
        reader.join(5)
        if self.exit_status is None:
            self._reap_child(wait=True)

    def _take(self, batch: Iterable) -> None:
        pending = self.pending
        for item in batch:
            if type(item) is tuple:
                pending.append(item)
            elif "progress" in item:
                self.progress = item["progress"]
            elif "final" in item:
                self.outcome = item["final"]

    def _reap_child(self, wait: bool = False) -> None:
        if self.pid is None or self.exit_status is not None:
            return
        deadline = time.monotonic() + 5
        while True:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.exit_status = status
                return
            if not wait:
                return
            if time.monotonic() > deadline:
                # Closed its pipe but lingers (a stuck atexit, a thread): it is done for us.
                self._kill("lingering")
                deadline = time.monotonic() + 5
            time.sleep(0.02)

    def _kill(self, because: str) -> None:
        if self.pid is None or self.exit_status is not None:
            return
        self.killed_because = self.killed_because or because
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)

    def _describe_exit(self) -> str:
        status = self.exit_status
        if status is None:
            return "the plugin process ended without a result"
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            return f"the plugin process was killed by {signal.Signals(sig).name}"
        return f"the plugin process exited with code {os.WEXITSTATUS(status)} without a result"

    def _finish(self) -> None:
        """Store the last lines, then the final status, then publish it — in that order."""
        outcome = self.outcome or {}
        result = outcome.get("result")
        traceback = outcome.get("traceback", "")
        if self.timed_out:
            status, error = TaskStatus.FAILED, f"timed out after {self.timeout}s"
        elif self.cancel_seen:
            status, error = TaskStatus.CANCELLED, "cancelled"
        elif outcome:
            status, error = outcome["status"], outcome.get("error", "")
        else:
            status, error = TaskStatus.FAILED, self._describe_exit()
        if outcome.get("status") == TaskStatus.FAILED and traceback and not self.timed_out:
            self.system(40, f"{outcome.get('error', '')}\n{traceback.rstrip()}")
        elif (
            error
            and status != TaskStatus.SUCCESS
            and not outcome.get("traceback")
            and (not self.pending or self.pending[-1][3] != error)
        ):
            self.system(40 if status == TaskStatus.FAILED else 30, error)
        self.system(20, f"finished: {status}", status=status)
        try:
            self.flush()
        except Exception:
            logger.exception("could not store the last log lines of %s", self.task.pk)
            error = error or "the last log lines could not be stored"
        finished = self.task.mark_finished(status, result=result, error=error, traceback=traceback)
        if not finished:
            self.task.refresh_from_db()
        realtime.publish_status(self.task)


def execute_task(task_id: str, *, worker: str = "") -> str:
    """Claim and run one task. Returns the final status, or "skipped" when there was
    nothing to claim (duplicate delivery, cancelled while queued, unknown id)."""
    worker = worker or f"{socket.gethostname()}:{os.getpid()}"
    try:
        claim = Task(pk=uuid.UUID(str(task_id)))
    except ValueError:
        logger.warning("%r is not a task id; nothing to run", task_id)
        return "skipped"
    # Claim first (one UPDATE): the claim is what dispatch latency is measured to. It is the
    # task's first query, so it doubles as the connection's health check (Django would send
    # a SELECT 1 before it): on a connection that died while idle it is retried once on a
    # new one. (Should the connection die after the UPDATE reached the database, the retry
    # finds nothing PENDING and the reaper ends the run "worker lost", as for a dead worker.)
    connection.health_check_done = True
    try:
        claimed = claim.mark_running(worker=worker)
    except (OperationalError, InterfaceError):
        logger.info("database connection lost while idle; claiming %s on a new one", task_id)
        connection.close()
        claimed = claim.mark_running(worker=worker)
    if not claimed:
        logger.info("task %s is not PENDING (or does not exist); nothing to claim", task_id)
        return "skipped"
    task = Task.objects.select_related("plugin", "user").get(pk=claim.pk)
    realtime.publish_status(task)
    return Run(task).execute()
