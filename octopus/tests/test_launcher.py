"""`make run` refuses to start twice and refuses a busy port, with a clear message."""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parents[2]


def launch_run(port: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "PORT": str(port)}
    env.pop("REDIS_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "octopus.launcher", "run"], cwd=BASE_DIR, env=env,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.fixture
def busy_port():
    # Whatever else happens, the launcher under test finds its port taken and stops early.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_a_second_run_is_refused_while_one_holds_the_lock(busy_port):
    (BASE_DIR / "var").mkdir(exist_ok=True)
    with open(BASE_DIR / "var" / "run.lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pytest.skip("a real `make run` is running in this checkout")
        result = launch_run(busy_port)
        fcntl.flock(handle, fcntl.LOCK_UN)
    assert result.returncode == 1
    assert "another `make run` is already running" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_busy_port_is_refused_before_anything_starts(busy_port):
    result = launch_run(busy_port)
    if "already running" in result.stderr:
        pytest.skip("a real `make run` is running in this checkout")
    assert result.returncode == 1
    assert f"port {busy_port} on 127.0.0.1 is already in use" in result.stderr
    assert "embedded Redis" not in result.stdout
