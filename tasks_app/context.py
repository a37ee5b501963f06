"""What a plugin sees while it runs: `TaskContext`, its logger, and the capture of `print()`,
stdlib `logging` and anything written to file descriptors 1 and 2 (subprocesses, C code).

Everything here lives in the plugin's own process, forked from the worker by `runner.py`.
A log call formats its message and appends one tuple to a bounded in-memory buffer under a
lock: no I/O, no database, a microsecond or so. A sender thread drains the buffer into a
pipe to the worker process every ~50 ms (sooner when the buffer fills), and the worker
numbers and stores the lines. When the buffer is full the log call waits for the sender —
backpressure: nothing is dropped, and memory stays bounded by `LOG_BUFFER_MAX_LINES`.

Wire format on the pipe: frames of a 4-byte big-endian length and a pickle of a list of
items. A log line is a tuple `(unix_time, level_number, source, message, metadata_json)`;
anything else is a control dict (`{"progress": (done, total, message)}`, and the last frame
`{"final": outcome}`). Pickle is fine here: both ends are Octopus, and the plugin is code the
worker runs anyway.
"""

from __future__ import annotations

import codecs
import contextlib
import ctypes
import inspect
import io
import json
import logging
import mmap
import os
import pickle
import select
import signal
import struct
import sys
import threading
import time
import traceback
import types
from typing import Any

from tasks_app.models import LogLevel, TaskLog

HEADER = struct.Struct("!I")
SEND_INTERVAL = 0.05
DEBUG, INFO, WARNING, ERROR = 10, 20, 30, 40
SOURCE_MAX = 100
# After run() returns: how long output still arriving on fds 1/2 (from a process the plugin
# started and left running) is waited for before the run ends without it.
FD_DRAIN_SECONDS = 1.0


class PluginTimeLimitExceeded(Exception):
    """Raised inside the plugin (from a signal handler) when its soft time limit is reached,
    so `try/finally` blocks get to run before the hard limit kills the process."""


class LineBuffer:
    """A bounded list of pending items and the thread that ships them to the worker.

    `put()` costs one uncontended lock round-trip and a list append; it blocks only while
    `max_lines` items are waiting (the worker or its database is behind)."""

    def __init__(self, write_fd: int, *, max_lines: int):
        self._fd = write_fd
        self._max = max(2, max_lines)
        self._wake_at = max(1, self._max // 2)
        self._items: list = []
        self._lock = threading.Lock()
        self._not_full = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._closing = False
        self._broken = False
        self._thread = threading.Thread(target=self._run, name="octopus-log-sender", daemon=True)
        self._thread.start()

    def put(self, item) -> None:
        with self._lock:
            items = self._items
            if len(items) >= self._max:
                self._wake.set()
                while len(self._items) >= self._max and not self._broken:
                    self._not_full.wait(0.5)
                if self._broken:
                    # The worker process is gone; there is nobody to deliver to.
                    os._exit(3)
                items = self._items
            items.append(item)
            if len(items) == self._wake_at:
                self._wake.set()

    def _take(self) -> list:
        with self._lock:
            items, self._items = self._items, []
            self._not_full.notify_all()
        return items

    def _run(self) -> None:
        while True:
            self._wake.wait(SEND_INTERVAL)
            self._wake.clear()
            closing = self._closing
            items = self._take()
            if items:
                try:
                    self.send(items)
                except OSError:
                    with self._lock:
                        self._broken = True
                        self._not_full.notify_all()
                    return
            if closing:
                return

    def send(self, items: list) -> None:
        """Write one frame. Blocks while the pipe is full (the worker is behind)."""
        data = pickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL)
        view = memoryview(HEADER.pack(len(data)) + data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    def close(self) -> None:
        """Ship everything still buffered and stop the sender thread."""
        self._closing = True
        self._wake.set()
        self._thread.join()


class PluginLogger:
    """`context.log`: `debug/info/warning/error/exception/critical(msg, *args, **metadata)`.

    `%`-style args are applied at call time (a bad format string is logged as-is with the
    args appended rather than raising into the plugin); keyword arguments are stored as the
    line's JSON metadata (values that JSON cannot encode become strings)."""

    __slots__ = ("_put", "_source")

    def __init__(self, buffer: LineBuffer, source: str = "plugin"):
        self._put = buffer.put
        self._source = source

    def _log(self, level: int, msg: Any, args: tuple, metadata: dict) -> None:
        if args:
            try:
                message = str(msg) % args
            except Exception:
                message = f"{msg} {args!r}"
        elif type(msg) is str:
            message = msg
        else:
            message = str(msg)
        if len(message) > TaskLog.MESSAGE_LIMIT:
            message = TaskLog.clean_message(message)
        meta = json.dumps(metadata, default=str) if metadata else None
        take_fd_output()
        self._put((time.time(), level, self._source, message, meta))

    def debug(self, msg: Any, *args: Any, **metadata: Any) -> None:
        self._log(DEBUG, msg, args, metadata)

    def info(self, msg: Any, *args: Any, **metadata: Any) -> None:
        self._log(INFO, msg, args, metadata)

    def warning(self, msg: Any, *args: Any, **metadata: Any) -> None:
        self._log(WARNING, msg, args, metadata)

    warn = warning

    def error(self, msg: Any, *args: Any, **metadata: Any) -> None:
        self._log(ERROR, msg, args, metadata)

    critical = error

    def exception(self, msg: Any, *args: Any, **metadata: Any) -> None:
        """An ERROR line with the traceback of the exception being handled appended."""
        if args:
            try:
                msg = str(msg) % args
            except Exception:
                msg = f"{msg} {args!r}"
        if sys.exc_info()[0] is not None:
            msg = f"{msg}\n{traceback.format_exc().rstrip()}"
        self._log(ERROR, msg, (), metadata)

    def source(self, name: str) -> PluginLogger:
        """A logger whose lines carry `source=name` (e.g. "fetcher"); filterable later."""
        child = PluginLogger.__new__(PluginLogger)
        child._put = self._put
        child._source = (str(name).strip() or "plugin")[:SOURCE_MAX]
        return child

    @property
    def name(self) -> str:
        """The source this logger's lines carry."""
        return self._source


class TaskContext:
    """The object passed as `context` to `run(context, **params)`.

    `log` / `progress()` only append to the in-memory buffer; `cancelled` reads one byte of
    memory shared with the worker, which sets it within ~0.5 s of a cancel request (or when
    the soft time limit is reached)."""

    def __init__(
        self,
        *,
        task_id: str,
        params: dict,
        user: Any,
        buffer: LineBuffer,
        flag: mmap.mmap,
    ):
        self.task_id = task_id
        self.params = params
        self.user = user
        self.log = PluginLogger(buffer)
        self._buffer = buffer
        self._flag = flag

    @property
    def cancelled(self) -> bool:
        return self._flag[0] != 0

    def progress(self, done: float, total: float | None = None, message: str | None = None):
        """Report progress; the worker stores the latest value at most twice a second."""
        done = float(done)
        total = None if total is None else float(total)
        text = "" if message is None else str(message)[:500]
        self._buffer.put({"progress": (done, total, text)})


class StreamCapture(io.TextIOBase):
    """Stands in for sys.stdout / sys.stderr, and takes what arrives on fd 1 / fd 2 (see
    FdCapture): every complete line becomes a log line; the rest waits for its newline."""

    def __init__(self, buffer: LineBuffer, source: str, level: int):
        super().__init__()
        self._put = buffer.put
        self._source = source
        self._level = level
        self._partial = ""
        self._lock = threading.Lock()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        take_fd_output()
        self.add(text)
        return len(text)

    def add(self, text: str) -> None:
        if not text:
            return
        with self._lock:
            data = self._partial + text
            lines = data.split("\n")
            self._partial = lines.pop()
            if len(self._partial) > TaskLog.MESSAGE_LIMIT:
                # A huge write without a newline must not grow without bound.
                lines.append(self._partial)
                self._partial = ""
            now = time.time()
            for line in lines:
                if len(line) > TaskLog.MESSAGE_LIMIT:
                    line = TaskLog.clean_message(line)
                self._put((now, self._level, self._source, line.rstrip("\r"), None))

    def flush(self) -> None:
        pass

    def finish(self) -> None:
        """Emit a last line that had no newline."""
        with self._lock:
            if self._partial:
                self._put((time.time(), self._level, self._source, self._partial, None))
                self._partial = ""


_FD_CAPTURE: FdCapture | None = None  # the plugin process's capture while run() runs


def take_fd_output() -> None:
    """Log what is waiting on the captured descriptors before a line written from Python, so
    that `print("done")` after `subprocess.run(...)` comes after the subprocess's output.
    Costs one lock and one poll (well under a microsecond) when nothing is waiting."""
    capture = _FD_CAPTURE
    if capture is not None:
        capture.take()


class FdCapture:
    """Points file descriptors (1 and 2) at pipes and logs what arrives through their
    StreamCaptures: output that bypasses `sys.stdout` — a subprocess that inherits the
    descriptor, C code, `os.write(1, ...)`.

    A thread per pipe waits for data; it, or a Python-level log call (`take()`), reads under
    one lock, so lines keep the order they were written in. Decoding is incremental UTF-8
    (invalid bytes become U+FFFD). A full pipe makes the writer wait: backpressure, as for a
    log call."""

    def __init__(self, targets: dict[int, StreamCapture]):
        global _FD_CAPTURE
        self._lock = threading.Lock()
        self._ready = select.poll()  # used under the lock only
        self._pipes: dict[int, tuple] = {}  # read end → (fd, saved copy of fd, capture, decoder)
        self._open: set[int] = set()  # read ends not at end of file (and still taken)
        for fd, capture in targets.items():
            read_fd, write_fd = os.pipe()
            os.set_blocking(read_fd, False)
            saved = os.dup(fd)
            os.dup2(write_fd, fd)
            os.close(write_fd)
            decoder = codecs.getincrementaldecoder("utf-8")("replace")
            self._pipes[read_fd] = (fd, saved, capture, decoder)
            self._ready.register(read_fd, select.POLLIN)
            self._open.add(read_fd)
        self._threads = [
            threading.Thread(target=self._pump, args=(r,), name=f"octopus-fd{p[0]}", daemon=True)
            for r, p in self._pipes.items()
        ]
        for thread in self._threads:
            thread.start()
        _FD_CAPTURE = self

    def _pump(self, read_fd: int) -> None:
        waiting = select.poll()
        waiting.register(read_fd, select.POLLIN)
        while read_fd in self._open:
            waiting.poll()  # data, or every writer gone
            with self._lock:
                self._read(read_fd)

    def take(self) -> None:
        with self._lock:
            for read_fd, _ in self._ready.poll(0):
                self._read(read_fd)

    def _read(self, read_fd: int) -> None:
        """Log everything in this pipe now (caller holds the lock)."""
        _, _, capture, decoder = self._pipes[read_fd]
        while read_fd in self._open:
            try:
                data = os.read(read_fd, 65536)
            except BlockingIOError:
                return
            if not data:
                capture.add(decoder.decode(b"", final=True))
                self._open.discard(read_fd)
                self._ready.unregister(read_fd)
                return
            capture.add(decoder.decode(data))

    def stop(self, timeout: float) -> bool:
        """Give the descriptors back and log what is left in the pipes. A process the plugin
        left running in the background may hold a pipe open: its output is logged for up to
        `timeout` seconds, then no longer. True when every pipe was read to its end."""
        global _FD_CAPTURE
        _FD_CAPTURE = None
        for fd, saved, _, _ in self._pipes.values():
            os.dup2(saved, fd)
            os.close(saved)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            drained = not self._open
            self._open.clear()
        return drained


def flush_std_streams() -> None:
    """Write out what the interpreter's own stdout/stderr objects hold: before the worker
    forks (or the plugin would log the worker's leftovers) and before the plugin's capture
    stops (so what the plugin left there is logged)."""
    for stream in (sys.__stdout__, sys.__stderr__):
        with contextlib.suppress(Exception):
            stream.flush()


class CaptureHandler(logging.Handler):
    """A root logging handler: every record becomes a line whose source is the logger name."""

    def __init__(self, buffer: LineBuffer):
        super().__init__(logging.DEBUG)
        self._put = buffer.put
        self._formatter = logging.Formatter()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info:
                message = f"{message}\n{self._formatter.formatException(record.exc_info)}"
            elif record.stack_info:
                message = f"{message}\n{record.stack_info}"
            if len(message) > TaskLog.MESSAGE_LIMIT:
                message = TaskLog.clean_message(message)
            level = LogLevel.from_number(record.levelno).value
            take_fd_output()
            self._put((record.created, level, record.name[:SOURCE_MAX], message, None))
        except Exception:
            self.handleError(record)


# --- the plugin process ------------------------------------------------------------------------


def _die_with_parent() -> None:
    # If the worker process dies (SIGKILL, OOM), the plugin must not run on unsupervised.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


_INHERITED: list = []


def _detach_database_connections() -> None:
    """Make Django open fresh connections in this process if the plugin uses the ORM.

    The worker's open connection was inherited with its socket. Closing it here would send
    PostgreSQL a Terminate and kill the worker's session, so it is only forgotten — and kept
    referenced until `os._exit`, so no finaliser ever runs on it. This lets the worker keep
    its connection across runs (no reconnect per run)."""
    from django.db import connections

    for conn in connections.all(initialized_only=True):
        if conn.connection is not None:
            _INHERITED.append(conn.connection)
            conn.connection = None


def _on_soft_limit(signum, frame):
    raise PluginTimeLimitExceeded("the run reached its time limit")


def _reset_signals() -> None:
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR2, signal.SIGCHLD):
        with contextlib.suppress(OSError, ValueError):
            signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGUSR1, _on_soft_limit)


def takes_context(func) -> bool:
    """True when `run`'s first parameter is named `context`: the contract's test
    for a context-aware plugin. `run(*args, **kwargs)` and plain keyword signatures are
    legacy: params arrive as keyword arguments and nothing else."""
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        return False
    if not params:
        return False
    first = params[0]
    return first.name == "context" and first.kind in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    )


def _jsonable(value: Any) -> Any:
    """The result as stored: itself when JSON can encode it, else `str(value)`."""
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return str(value)


def child_main(
    *,
    write_fd: int,
    flag: mmap.mmap,
    source_bytes: bytes,
    path: str,
    module_name: str,
    plugins_folder: str,
    task_id: str,
    params: dict,
    user: Any,
    max_lines: int,
) -> None:
    """Body of the forked plugin process. Never returns: ends with `os._exit`."""
    code = 1
    try:
        _detach_database_connections()
        _die_with_parent()
        _reset_signals()
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        buffer = LineBuffer(write_fd, max_lines=max_lines)
        outcome = _run_plugin(
            buffer=buffer, flag=flag, source_bytes=source_bytes, path=path,
            module_name=module_name, plugins_folder=plugins_folder, task_id=task_id,
            params=params, user=user,
        )  # fmt: skip
        buffer.close()
        buffer.send([{"final": outcome}])
        code = 0
    except BaseException:
        with contextlib.suppress(Exception):
            os.write(2, traceback.format_exc().encode())
    finally:
        os._exit(code)


def _run_plugin(
    *,
    buffer: LineBuffer,
    flag: mmap.mmap,
    source_bytes: bytes,
    path: str,
    module_name: str,
    plugins_folder: str,
    task_id: str,
    params: dict,
    user: Any,
) -> dict:
    """Load the module from the bytes the worker hashed, call `run`, and describe the
    outcome as `{"status", "result", "error", "traceback"}`. Output is captured meanwhile."""
    stdout = StreamCapture(buffer, "stdout", INFO)
    # stderr is diagnostics more often than failure; WARNING keeps ERROR meaningful.
    stderr = StreamCapture(buffer, "stderr", WARNING)
    fds = FdCapture({1: stdout, 2: stderr})
    handler = CaptureHandler(buffer)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    logging.disable(logging.NOTSET)
    sys.stdout, sys.stderr = stdout, stderr
    if plugins_folder not in sys.path:
        sys.path.insert(0, plugins_folder)
    try:
        module = types.ModuleType(module_name)
        module.__file__ = path
        sys.modules[module_name] = module
        exec(compile(source_bytes, path, "exec"), module.__dict__)
        run = getattr(module, "run", None)
        if not callable(run):
            return {"status": "FAILED", "result": None, "traceback": "",
                    "error": "the plugin defines no callable run()"}  # fmt: skip
        if takes_context(run):
            context = TaskContext(
                task_id=task_id, params=dict(params), user=user, buffer=buffer, flag=flag
            )
            result = run(context, **params)
        else:
            result = run(**params)
        return {"status": "SUCCESS", "result": _jsonable(result), "error": "", "traceback": ""}
    except PluginTimeLimitExceeded:
        return {"status": "FAILED", "result": None, "error": "timed out",
                "traceback": traceback.format_exc()}  # fmt: skip
    except BaseException as exc:  # SystemExit / KeyboardInterrupt end the run too
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return {"status": "FAILED", "result": None, "error": error[:10000],
                "traceback": traceback.format_exc()}  # fmt: skip
    finally:
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        flush_std_streams()
        if not fds.stop(timeout=FD_DRAIN_SECONDS):
            buffer.put((time.time(), WARNING, "system", "output of processes the plugin "
                        "left running is no longer captured", None))  # fmt: skip
        stdout.finish()
        stderr.finish()
