"""Fixtures for running plugins: a temporary plugins folder and a way to register files in it.

Plugins are registered by writing the file and creating the `Plugin` row with the sha256 of
its bytes, the way discovery would, so these tests do not depend on discovery.
"""

from __future__ import annotations

import hashlib
import textwrap
import time
from collections.abc import Callable

import pytest

from plugins_app.models import Plugin
from tasks_app.models import Task


@pytest.fixture
def plugins_dir(tmp_path, settings):
    folder = tmp_path / "plugins"
    folder.mkdir()
    settings.PLUGINS_FOLDER = folder
    return folder


@pytest.fixture
def make_plugin(plugins_dir) -> Callable[..., Plugin]:
    """make_plugin("slow", source, schema=..., timeout=..., takes_context=...) → Plugin."""

    def make(
        plugin_id: str,
        source: str,
        *,
        schema: dict | None = None,
        timeout: int | None = None,
        is_active: bool = True,
    ) -> Plugin:
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


def wait_for(predicate: Callable[[], object], timeout: float = 20, interval: float = 0.05):
    """Poll until `predicate()` is truthy; returns its value or fails the test."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def wait_for_status(task: Task, *statuses: str, timeout: float = 20) -> Task:
    def check():
        task.refresh_from_db()
        return task.status in statuses

    wait_for(check, timeout=timeout)
    return task
