"""Fixtures for schedules: plugins registered in a temporary folder, and a real `celery beat`
process (DatabaseScheduler) on the test database and Redis, beside conftest's real worker."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from functools import partial
from pathlib import Path

import pytest

from conftest import subprocess_env
from conftest import wait_for as _wait_for
from plugins_app.models import Plugin

BASE_DIR = Path(__file__).resolve().parents[2]

GREET_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "times": {"type": "integer", "minimum": 1, "default": 1},
    },
    "required": ["name"],
    "additionalProperties": False,
}
GREET_SOURCE = '''
    """Say hello."""

    def run(context, name: str, times: int = 1) -> dict:
        for _ in range(times):
            context.log.info("hello %s", name)
        return {"greeted": name}
'''


@pytest.fixture
def greet(make_plugin) -> Plugin:
    return make_plugin("greet", GREET_SOURCE, schema=GREET_SCHEMA)


# Beat fires on whole-second ticks: wait longer and poll less often than the run tests do.
wait_for = partial(_wait_for, timeout=30, interval=0.1)


class BeatProcess:
    """A real `celery beat` child process (DatabaseScheduler) against the test database."""

    def __init__(self):
        self.name = f"beat-{uuid.uuid4().hex[:8]}"
        self.env = subprocess_env()
        self.log_path = BASE_DIR / "var" / f"{self.name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30) -> BeatProcess:
        self.log_path.parent.mkdir(exist_ok=True)
        self._log = open(self.log_path, "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "octopus", "beat", "-l", "debug",
             "--pidfile=", "--max-interval", "1",
             "-s", str(BASE_DIR / "var" / f"{self.name}-schedule")],
            cwd=BASE_DIR, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"beat exited early:\n{self.output()[-3000:]}")
            if "beat: Starting" in self.output():
                return self
            time.sleep(0.1)
        raise RuntimeError(f"beat not ready in {timeout}s:\n{self.output()[-3000:]}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

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


@pytest.fixture
def beat_factory(transactional_db):
    """Start real beat processes; each is stopped when the test ends."""
    started: list[BeatProcess] = []

    def start() -> BeatProcess:
        beat = BeatProcess().start()
        started.append(beat)
        return beat

    yield start
    for beat in started:
        beat.stop()
