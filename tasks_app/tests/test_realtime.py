"""The channel-layer side of a run, through the real channels-redis layer."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from tasks_app import realtime
from tasks_app.models import Task, TaskStatus
from tasks_app.runner import execute_task


def test_the_group_name_is_the_task_uuid_hex():
    task_id = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert realtime.task_logs_group(task_id) == "task-12345678123456781234567812345678-logs"
    assert realtime.task_logs_group(str(task_id)) == realtime.task_logs_group(task_id)


def _listen(task_id) -> str:
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(realtime.task_logs_group(task_id), channel)
    return channel


async def _drain_until_final(channel: str, timeout: float = 10) -> list[dict]:
    layer = get_channel_layer()
    messages = []
    while True:
        message = await asyncio.wait_for(layer.receive(channel), timeout)
        messages.append(message)
        if message["type"] == "task.status" and message["status"] != TaskStatus.RUNNING:
            return messages


@pytest.mark.django_db(transaction=True)
def test_lines_are_published_in_order_and_the_final_status_comes_after_the_last_line(
    make_plugin,
):
    plugin = make_plugin(
        "pub",
        """
        def run(context):
            for i in range(1200):
                context.log.info("n%d", i, i=i)
            context.progress(1, total=1)
        """,
    )
    task = Task.objects.create(plugin=plugin)
    channel = _listen(task.pk)
    execute_task(str(task.pk))
    messages = async_to_sync(_drain_until_final)(channel)
    assert messages[0]["type"] == "task.status" and messages[0]["status"] == TaskStatus.RUNNING
    assert messages[-1]["status"] == TaskStatus.SUCCESS
    lines = [line for m in messages if m["type"] == "log.lines" for line in m["lines"]]
    assert [line["seq"] for line in lines] == list(range(1, 1200 + 3))
    assert messages[-1]["log_total"] == 1202
    assert all(len(m["lines"]) <= realtime.FRAME_MAX_LINES for m in messages if "lines" in m)
    sample = lines[5]
    assert sample["level"] == "INFO" and sample["source"] == "plugin"
    assert sample["message"] == "n4" and sample["metadata"] == '{"i": 4}'
    assert "T" in sample["timestamp"]
    assert any(m["type"] == "task.progress" and m["percent"] == 100.0 for m in messages)


def test_publishing_never_raises_when_the_layer_is_unreachable(settings):
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": "redis://127.0.0.1:1/0"}]},
        }
    }
    from channels.layers import channel_layers

    channel_layers.backends.pop("default", None)
    try:
        assert realtime.publish_log_lines(uuid.uuid4(), [{"seq": 1, "message": "x"}]) is False
    finally:
        channel_layers.backends.pop("default", None)
