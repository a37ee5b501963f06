from __future__ import annotations

import pytest
from django.test import AsyncClient, Client

from tasks_app.tests._api_support import add_lines, make_plugin, make_task

pytestmark = pytest.mark.django_db


@pytest.fixture
def task(alice):
    task = make_task(make_plugin(), alice)
    lines = []
    for i in range(1, 101):
        level = (
            "ERROR" if i % 10 == 0 else "WARNING" if i % 5 == 0 else "DEBUG" if i % 2 else "INFO"
        )
        source = "fetcher" if i % 3 == 0 else "plugin"
        lines.append((level, source, f"line {i} {'Disk FULL' if i in (20, 33, 70) else 'ok'}"))
    add_lines(task, lines)
    return task


@pytest.fixture
def api(alice):
    client = Client()
    client.force_login(alice)
    return client


def _logs(api, task, **params):
    response = api.get(f"/api/v1/tasks/{task.id}/logs", params)
    assert response.status_code == 200, response.content
    return response.json()


def test_logs_come_in_seq_order_with_the_documented_shape(api, task):
    body = _logs(api, task, limit=5)
    assert body["total"] == 100
    assert [i["seq"] for i in body["items"]] == [1, 2, 3, 4, 5]
    assert set(body["items"][0]) == {"seq", "timestamp", "level", "source", "message", "metadata"}
    assert body["items"][0]["level"] == "DEBUG"
    assert body["items"][0]["metadata"] == {"i": 1}


def test_logs_filter_by_level_list_and_min_level(api, task):
    errors = _logs(api, task, level="ERROR", limit=1000)
    assert errors["total"] == 10
    assert {i["level"] for i in errors["items"]} == {"ERROR"}
    both = _logs(api, task, level="error,warning", limit=1000)
    assert both["total"] == 20
    assert _logs(api, task, min_level="WARNING")["total"] == 20
    assert _logs(api, task, level="DEBUG", min_level="ERROR")["total"] == 0


def test_logs_filter_by_source_and_case_insensitive_search(api, task):
    fetcher = _logs(api, task, source="fetcher", limit=1000)
    assert fetcher["total"] == 33
    assert {i["source"] for i in fetcher["items"]} == {"fetcher"}
    found = _logs(api, task, search="disk full")
    assert [i["seq"] for i in found["items"]] == [20, 33, 70]
    assert [i["seq"] for i in _logs(api, task, search="DISK", level="ERROR")["items"]] == [20, 70]


def test_logs_page_with_offset_limit_and_after_seq(api, task):
    page = _logs(api, task, offset=10, limit=3)
    assert [i["seq"] for i in page["items"]] == [11, 12, 13]
    after = _logs(api, task, after_seq=95)
    assert after["total"] == 5
    assert [i["seq"] for i in after["items"]] == [96, 97, 98, 99, 100]
    errors_after = _logs(api, task, after_seq=50, level="ERROR")
    assert [i["seq"] for i in errors_after["items"]] == [60, 70, 80, 90, 100]


@pytest.mark.parametrize(
    "params, field",
    [({"level": "LOUD"}, "level"), ({"min_level": "7"}, "min_level"), ({"limit": 1001}, "limit"),
     ({"limit": 0}, "limit"), ({"offset": -1}, "offset"), ({"after_seq": "x"}, "after_seq"),
     ({"search": "x" * 201}, "search"), ({"after_seq": 10**20}, "after_seq")],
)  # fmt: skip
def test_bad_log_query_values_get_a_readable_422(api, task, params, field):
    response = api.get(f"/api/v1/tasks/{task.id}/logs", params)
    assert response.status_code == 422
    body = response.json()
    assert field in body["errors"]
    assert body["errors"][field][0]


def test_stats_count_by_level_and_source(api, task):
    body = api.get(f"/api/v1/tasks/{task.id}/logs/stats").json()
    assert body == {
        "total": 100,
        "by_level": {"DEBUG": 40, "INFO": 40, "WARNING": 10, "ERROR": 10},
        "by_source": {"fetcher": 33, "plugin": 67},
    }


def test_stats_follow_lines_written_after_a_first_look(api, task):
    api.get(f"/api/v1/tasks/{task.id}/logs/stats")
    add_lines(task, [("INFO", "mailer", "sent"), ("ERROR", "fetcher", "boom")])
    body = api.get(f"/api/v1/tasks/{task.id}/logs/stats").json()
    assert body["total"] == 102
    assert body["by_source"] == {"fetcher": 34, "mailer": 1, "plugin": 67}
    assert body["by_level"]["ERROR"] == 11


def test_sources_lists_each_source_once(api, task):
    assert api.get(f"/api/v1/tasks/{task.id}/logs/sources").json() == ["fetcher", "plugin"]


def test_download_streams_the_whole_log_as_text(api, task):
    response = api.get(f"/api/v1/tasks/{task.id}/logs/download")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response.streaming
    text = b"".join(response.streaming_content).decode()
    lines = text.splitlines()
    assert len(lines) == 100
    assert lines[0].endswith("DEBUG   [plugin] line 1 ok")
    assert "ERROR   [plugin] line 20 Disk FULL" in lines[19]


def test_download_honours_filters(api, task):
    response = api.get(f"/api/v1/tasks/{task.id}/logs/download", {"level": "ERROR"})
    text = b"".join(response.streaming_content).decode()
    assert len(text.splitlines()) == 10


def test_download_over_many_chunks_keeps_every_line_once(api, alice):
    from tasks_app import logquery

    task = make_task(make_plugin("big"), alice)
    add_lines(
        task, [("INFO", "plugin", f"n={i}") for i in range(1, logquery.DOWNLOAD_CHUNK * 2 + 8)]
    )
    response = api.get(f"/api/v1/tasks/{task.id}/logs/download")
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert [line.rsplit("n=", 1)[1] for line in lines] == [str(i) for i in range(1, 4008)]


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.mark.anyio
@pytest.mark.django_db(transaction=True)
async def test_download_under_asgi_streams_asynchronously(alice):
    from asgiref.sync import sync_to_async

    task = await sync_to_async(make_task)(await sync_to_async(make_plugin)(), alice)
    await sync_to_async(add_lines)(task, [("INFO", "plugin", f"n={i}") for i in range(1, 4500)])
    client = AsyncClient()
    await sync_to_async(client.force_login)(alice)
    response = await client.get(f"/api/v1/tasks/{task.id}/logs/download")
    assert response.status_code == 200
    assert response.is_async
    chunks = [chunk async for chunk in response.streaming_content]
    assert len(chunks) == 3
    assert b"".join(chunks).decode().count("\n") == 4499


def test_a_multi_line_message_stays_one_indented_entry(api, alice):
    task = make_task(make_plugin("multi"), alice)
    add_lines(task, [("ERROR", "plugin", "Traceback:\n  File x\nValueError")])
    text = b"".join(api.get(f"/api/v1/tasks/{task.id}/logs/download").streaming_content).decode()
    assert text.endswith("[plugin] Traceback:\n      File x\n    ValueError\n")


def test_source_counts_follow_deleted_lines_and_vanish_with_the_task(api, task):
    from django.db import connection

    from tasks_app import logquery
    from tasks_app.models import TaskLog

    TaskLog.objects.filter(task=task, source="fetcher", seq__lte=30).delete()
    assert logquery.source_counts(task) == {"fetcher": 23, "plugin": 67}
    TaskLog.objects.filter(task=task, source="fetcher").delete()
    assert api.get(f"/api/v1/tasks/{task.id}/logs/sources").json() == ["plugin"]
    task.delete()
    assert logquery.source_counts(task) == {}
    if connection.vendor == "postgresql":  # SQLite counts on the index, with no table
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {logquery.SOURCE_COUNT_TABLE}")
            assert cursor.fetchone()[0] == 0
