"""Shared fixtures: personas, a real Redis client, and a real Celery worker process.

Tests talk to the real database (SQLite file or PostgreSQL) and the real Redis that
`make test` points at (`REDIS_URL`); nothing here fakes either.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis as redis_lib

if TYPE_CHECKING:
    from plugins_app.models import Plugin

BASE_DIR = Path(__file__).resolve().parent


@pytest.fixture
def alice(django_user_model):
    """Owner of the runs under test; may run plugins."""
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user("alice", password="alice-pass-123")
    user.user_permissions.add(Permission.objects.get(codename="run_plugin"))
    return user


@pytest.fixture
def bob(django_user_model):
    """A teammate who may run plugins and see every run."""
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user("bob", password="bob-pass-123")
    user.user_permissions.add(
        Permission.objects.get(codename="run_plugin"),
        Permission.objects.get(codename="view_all_tasks"),
    )
    return user


@pytest.fixture
def charlie(django_user_model):
    """Logged in, but with no permissions at all."""
    return django_user_model.objects.create_user("charlie", password="charlie-pass-123")


@pytest.fixture
def admin_user_obj(django_user_model):
    return django_user_model.objects.create_superuser("root", password="root-pass-123")


@pytest.fixture
def redis_client():
    from django.conf import settings

    client = redis_lib.Redis.from_url(settings.REDIS_URL)
    yield client
    client.close()


def database_url_for_subprocess() -> str:
    """The URL of the database the tests are using right now (the test database), so a
    worker process started by a test reads and writes the same rows."""
    from django.db import connection

    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{s['NAME']}"
    auth = s["USER"] or ""
    if s.get("PASSWORD"):
        auth += f":{s['PASSWORD']}"
    host = s.get("HOST") or "127.0.0.1"
    port = s.get("PORT") or 5432
    return f"postgres://{auth}@{host}:{port}/{s['NAME']}"


def subprocess_env(**overrides: str) -> dict[str, str]:
    """Environment for a child process (worker, beat, daphne) started by a test: this
    process's environment pointed at the test database, the test Redis and the current
    PLUGINS_FOLDER; `overrides` win."""
    from django.conf import settings

    return {
        **os.environ,
        "DATABASE_URL": database_url_for_subprocess(),
        "REDIS_URL": settings.REDIS_URL,
        "PLUGINS_FOLDER": str(settings.PLUGINS_FOLDER),
        "PYTHONUNBUFFERED": "1",
        **overrides,
    }


def wait_for(predicate: Callable[[], object], timeout: float = 20, interval: float = 0.05):
    """Poll until `predicate()` is truthy; returns its value or fails the test."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


@pytest.fixture
def plugins_dir(tmp_path, settings) -> Path:
    """An empty PLUGINS_FOLDER for this test (settings point at it)."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    settings.PLUGINS_FOLDER = folder
    return folder


@pytest.fixture
def make_plugin(plugins_dir) -> Callable[..., Plugin]:
    """make_plugin("slow", source, schema=..., timeout=..., is_active=...) → Plugin.

    Writes the file and creates its row with the sha256 of its bytes, the way discovery
    would, so tests of running and scheduling do not depend on discovery."""

    def make(
        plugin_id: str,
        source: str,
        *,
        schema: dict | None = None,
        timeout: int | None = None,
        is_active: bool = True,
    ) -> Plugin:
        from plugins_app.models import Plugin

        data = textwrap.dedent(source).encode()
        name = plugin_id.replace("-", "_") + ".py"
        (plugins_dir / name).write_bytes(data)
        return Plugin.objects.create(
            id=plugin_id,
            name=plugin_id,
            file_path=name,
            sha256=hashlib.sha256(data).hexdigest(),
            md5=hashlib.md5(data).hexdigest(),
            params_schema=schema or {"type": "object", "properties": {}},
            takes_context="def run(context" in data.decode(),
            timeout=timeout,
            is_active=is_active,
        )

    return make


class CeleryProcess:
    """A real `celery` child process (worker or beat) against the test database and Redis,
    logging to var/<name>.log. Subclasses give the command line and when it is ready."""

    kind = ""

    def __init__(self, *, extra_env: dict[str, str] | None = None):
        self.name = f"{self.kind}-{uuid.uuid4().hex[:8]}"
        self.env = subprocess_env(**(extra_env or {}))
        self.log_path = BASE_DIR / "var" / f"{self.name}.log"
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def start(self, timeout: float = 30):
        self.log_path.parent.mkdir(exist_ok=True)
        self._log = open(self.log_path, "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "octopus", *self.command()],
            cwd=BASE_DIR, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so kill() takes its children too
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited early:\n{self.output()[-3000:]}")
            if self.ready():
                return self
            time.sleep(0.1)
        raise RuntimeError(f"{self.kind} not ready in {timeout}s:\n{self.output()[-3000:]}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL the process and every process it started (pool children, plugin
        processes), as a machine or container dying would."""
        import signal

        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self, *, kill: bool = False, timeout: float = 20) -> None:
        if self.proc and self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and not self._log.closed:
            self._log.close()


class WorkerProcess(CeleryProcess):
    """`celery worker`; ready once it has written its heartbeat key."""

    kind = "worker"

    def __init__(self, *, concurrency: int = 1, extra_env: dict[str, str] | None = None):
        super().__init__(extra_env=extra_env)
        self.hostname = f"{self.name}@localhost"
        self.concurrency = concurrency
        self._redis = redis_lib.Redis.from_url(self.env["REDIS_URL"])

    def command(self) -> list[str]:
        return ["worker", "-l", "info", "-n", self.hostname, "-c", str(self.concurrency),
                "--without-gossip", "--without-mingle"]  # fmt: skip

    def ready(self) -> bool:
        from octopus.celery import WORKER_KEY_PREFIX

        return bool(self._redis.exists(WORKER_KEY_PREFIX + self.hostname))


class BeatProcess(CeleryProcess):
    """`celery beat` (DatabaseScheduler, ticking at least every second)."""

    kind = "beat"

    def command(self) -> list[str]:
        return ["beat", "-l", "debug", "--pidfile=", "--max-interval", "1",
                "-s", str(BASE_DIR / "var" / f"{self.name}-schedule")]  # fmt: skip

    def ready(self) -> bool:
        return "beat: Starting" in self.output()


def _process_factory(cls):
    """Start real processes of `cls`; each is stopped when the test ends."""
    started: list[CeleryProcess] = []

    def start(**kwargs):
        process = cls(**kwargs).start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def worker_factory(transactional_db):
    yield from _process_factory(WorkerProcess)


@pytest.fixture
def celery_worker_process(worker_factory) -> WorkerProcess:
    return worker_factory()


@pytest.fixture
def beat_factory(transactional_db):
    yield from _process_factory(BeatProcess)
