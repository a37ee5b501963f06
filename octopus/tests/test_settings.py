"""Bad configuration stops start-up with one clear line naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parents[2]


def run_check(**env_overrides: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "PLUGINS_FOLDER"}}
    env.update({"DEBUG": "true", "SECRET_KEY": "x" * 50})
    for key, value in env_overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=BASE_DIR, env=env, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip


def assert_one_clear_line(result: subprocess.CompletedProcess, variable: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]


def test_it_starts_with_no_environment_beyond_debug():
    result = run_check()
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_it_rejects_an_unparsable_database_url():
    assert_one_clear_line(run_check(DATABASE_URL="nonsense://what@"), "DATABASE_URL")


def test_it_requires_a_secret_key_when_debug_is_off():
    assert_one_clear_line(run_check(DEBUG="false", SECRET_KEY=None), "SECRET_KEY")


def test_it_rejects_a_debug_value_it_cannot_read():
    assert_one_clear_line(run_check(DEBUG="maybe"), "DEBUG")


def test_it_rejects_a_redis_url_with_the_wrong_scheme():
    assert_one_clear_line(run_check(REDIS_URL="http://127.0.0.1:6379"), "REDIS_URL")


def test_it_reports_a_missing_plugins_folder_by_its_check_id(tmp_path):
    result = run_check(PLUGINS_FOLDER=str(tmp_path / "nope"))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "plugins_app.E001" in result.stderr
    assert "PLUGINS_FOLDER" in result.stderr


@pytest.mark.parametrize("debug", ["false"])
def test_deploy_check_is_clean_with_production_like_settings(debug):
    env = {k: v for k, v in os.environ.items() if k != "DEBUG"}
    env.update({"DEBUG": debug, "SECRET_KEY": "k" * 10 + "-Zq8#vR2!mW" * 5,
                "ALLOWED_HOSTS": "octopus.example.com"})  # fmt: skip
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "ERROR"],
        cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "ERROR" not in result.stderr
