"""Fixtures for schedules: a plugin registered in a temporary folder, and a slower `wait_for`
(the real `celery beat` and worker processes are the root conftest's)."""

from __future__ import annotations

from functools import partial

import pytest

from conftest import wait_for as _wait_for
from plugins_app.models import Plugin

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
