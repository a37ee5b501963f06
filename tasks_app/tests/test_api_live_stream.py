"""Acceptance: a real worker runs a plugin logging 20,000 lines while real `websockets`
clients follow it through a real daphne server (and the real channels-redis layer)."""

from __future__ import annotations

import asyncio

import pytest

from tasks_app.models import LogLevel, TaskLog, TaskStatus
from tasks_app.services import task_create
from tasks_app.tests._api_support import DaphneServer, follow_log, session_cookie
from tasks_app.tests.conftest import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

CHATTY = """
def run(context, n: int = 20000):
    for i in range(1, n + 1):
        if i % 100 == 0:
            context.log.error("line %d", i)
        else:
            context.log.info("line %d", i)
    return n
"""


@pytest.fixture
def daphne_server(plugins_dir):
    server = DaphneServer().start()
    yield server
    server.stop()


def test_clients_of_a_20000_line_run_get_every_line_once_then_the_status(
    worker_factory, make_plugin, daphne_server, alice
):
    plugin = make_plugin("chatty", CHATTY)
    worker_factory()
    cookie = session_cookie(alice)
    task = task_create(plugin=plugin, params={}, user=alice)
    # Join while it runs: wait for the first stored lines, so both backlog and live are used.
    wait_for(lambda: TaskLog.objects.filter(task=task).exists(), timeout=60, interval=0.01)
    url = daphne_server.ws_url(f"/ws/tasks/{task.id}/logs/")

    async def clients():
        return await asyncio.gather(
            follow_log(url, cookie=cookie, origin=daphne_server.origin),
            follow_log(url + "?level=ERROR", cookie=cookie, origin=daphne_server.origin),
            # Slow: sleeps between reads and keeps a tiny receive queue, so the server side
            # backs up (TCP, daphne's buffers, the channel layer).
            follow_log(
                url, cookie=cookie, origin=daphne_server.origin, read_delay=0.02, max_queue=1
            ),
        )

    full, errors, slow = asyncio.run(clients())
    task.refresh_from_db()
    assert task.status == TaskStatus.SUCCESS, task.error
    total = task.log_total
    assert total >= 20000

    for seen in (full, slow):
        seqs = [line["seq"] for line in seen["lines"]]
        assert seqs == list(range(1, total + 1))  # contiguous, none missing, none twice
        assert seen["status"]["status"] == "SUCCESS"
        assert seen["status"]["log_total"] == total
    messages = {line["message"] for line in full["lines"]}
    assert {f"line {i}" for i in range(1, 20001)} <= messages

    error_seqs = [line["seq"] for line in errors["lines"]]
    assert {line["level"] for line in errors["lines"]} == {"ERROR"}
    assert error_seqs == list(
        TaskLog.objects.filter(task=task, level=LogLevel.ERROR)
        .order_by("seq")
        .values_list("seq", flat=True)
    )
    assert len(error_seqs) == task.log_error >= 200
    assert errors["status"]["status"] == "SUCCESS"
    print(f"resyncs: full={full['resyncs']} errors={errors['resyncs']} slow={slow['resyncs']}")
