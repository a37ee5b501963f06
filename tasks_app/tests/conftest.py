"""Helpers for running plugins. `plugins_dir`, `make_plugin` and `wait_for` live in the root
conftest.py (the schedules tests use them too); `wait_for` is re-exported for the imports
of this package's tests."""

from __future__ import annotations

from conftest import wait_for
from tasks_app.models import Task

__all__ = ["wait_for", "wait_for_status"]


def wait_for_status(task: Task, *statuses: str, timeout: float = 20) -> Task:
    def check():
        task.refresh_from_db()
        return task.status in statuses

    wait_for(check, timeout=timeout)
    return task
