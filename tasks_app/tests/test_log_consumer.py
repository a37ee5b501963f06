"""The log and task-list sockets, through the real ASGI application (origin check, session
auth, routing) and the real channels-redis layer; lines come from the real database."""

from __future__ import annotations

import itertools
import json

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from octopus.asgi import application
from tasks_app import realtime
from tasks_app.models import Task, TaskStatus
from tasks_app.tests._api_support import add_lines, make_plugin, make_task

pytestmark = [pytest.mark.anyio, pytest.mark.django_db(transaction=True)]

ORIGIN = (b"origin", b"http://127.0.0.1")


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(autouse=True)
async def _close_consumer_connections():
    """Consumers read through database_sync_to_async's worker thread; with CONN_MAX_AGE its
    connection would outlive the test and keep PostgreSQL from dropping the test database."""
    from django.db import connections

    yield
    await sync_to_async(connections.close_all)()


def _session_cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


async def _socket(path: str, user=None, *, origin=ORIGIN) -> WebsocketCommunicator:
    headers = [origin] if origin else []
    if user is not None:
        headers.append((b"cookie", await sync_to_async(_session_cookie)(user)))
    return WebsocketCommunicator(application, path, headers=headers)


async def _open(path: str, user) -> WebsocketCommunicator:
    comm = await _socket(path, user)
    connected, _ = await comm.connect(timeout=5)
    assert connected
    return comm


async def _until_closed(comm) -> list[dict]:
    """Every frame until the server closes the socket."""
    frames = []
    while True:
        message = await comm.receive_output(timeout=10)
        if message["type"] == "websocket.close":
            return frames
        frames.append(json.loads(message["text"]))


def _seqs(frames) -> list[int]:
    return [line["seq"] for f in frames if f["type"] == "lines" for line in f["lines"]]


def _assert_consecutive(frames) -> None:
    ranges = [(f["from_seq"], f["to_seq"]) for f in frames if f["type"] == "lines"]
    for (_, prev_to), (next_from, _) in itertools.pairwise(ranges):
        assert next_from == prev_to + 1


@sync_to_async
def _running_task(user, lines: int = 0) -> Task:
    task = make_task(make_plugin(), user, status=TaskStatus.RUNNING)
    if lines:
        add_lines(task, [("INFO", "plugin", f"line {i}") for i in range(1, lines + 1)])
    return task


@sync_to_async
def _write_and_publish(task: Task, lines: list[tuple[str, str, str]], *, publish_from: int = 0):
    """Store lines as the log writer does, then publish those with seq ≥ publish_from."""
    first = task.log_total + 1
    add_lines(task, lines)
    rows = [
        {"seq": first + i, "timestamp": "2026-11-25T00:00:00+00:00", "level": lv, "source": src,
         "message": msg, "metadata": None}
        for i, (lv, src, msg) in enumerate(lines)
    ]  # fmt: skip
    realtime.publish_log_lines(task.pk, [r for r in rows if r["seq"] >= publish_from])


@sync_to_async
def _finish(task: Task, status: str = TaskStatus.SUCCESS) -> None:
    task.refresh_from_db()
    assert task.mark_finished(status)
    realtime.publish_status(task)


# --- access -------------------------------------------------------------------------------


async def test_an_anonymous_socket_is_refused(alice):
    task = await _running_task(alice)
    comm = await _socket(f"/ws/tasks/{task.id}/logs/")
    connected, _ = await comm.connect(timeout=5)
    assert connected is False


async def test_another_users_task_is_refused(alice, charlie):
    task = await _running_task(alice)
    comm = await _socket(f"/ws/tasks/{task.id}/logs/", charlie)
    connected, _ = await comm.connect(timeout=5)
    assert connected is False


async def test_an_unknown_task_is_refused(alice):
    comm = await _socket("/ws/tasks/00000000-0000-4000-8000-000000000000/logs/", alice)
    connected, _ = await comm.connect(timeout=5)
    assert connected is False


async def test_a_forged_origin_is_refused_even_with_a_valid_session(alice):
    task = await _running_task(alice)
    comm = await _socket(
        f"/ws/tasks/{task.id}/logs/", alice, origin=(b"origin", b"https://evil.example")
    )
    connected, _ = await comm.connect(timeout=5)
    assert connected is False


async def test_a_user_who_sees_all_tasks_may_follow_anothers_run(alice, bob):
    task = await _running_task(alice, lines=3)
    comm = await _open(f"/ws/tasks/{task.id}/logs/", bob)
    frame = await comm.receive_json_from(timeout=5)
    assert _seqs([frame]) == [1, 2, 3]
    await comm.disconnect()


@pytest.mark.parametrize(
    "query, field",
    [("level=LOUD", "level"), ("after_seq=-3", "after_seq"), ("format=xml", "format"),
     ("search=" + "x" * 300, "search")],
)  # fmt: skip
async def test_a_bad_query_gets_an_error_frame_and_close_4400(alice, query, field):
    task = await _running_task(alice, lines=3)
    comm = await _open(f"/ws/tasks/{task.id}/logs/?{query}", alice)
    frame = await comm.receive_json_from(timeout=5)
    assert frame["type"] == "error"
    assert field in frame["errors"]
    closed = await comm.receive_output(timeout=5)
    assert closed == {"type": "websocket.close", "code": 4400}


# --- backlog, live lines, status ----------------------------------------------------------


async def test_a_finished_run_sends_its_backlog_then_the_status_then_closes(alice):
    task = await _running_task(alice, lines=1203)
    await _finish(task)
    frames = await _until_closed(await _open(f"/ws/tasks/{task.id}/logs/", alice))
    assert _seqs(frames) == list(range(1, 1204))
    assert all(len(f["lines"]) <= 500 for f in frames if f["type"] == "lines")
    _assert_consecutive(frames)
    assert frames[-1]["type"] == "status"
    assert frames[-1]["status"] == "SUCCESS"
    assert frames[-1]["log_total"] == 1203


async def test_after_seq_skips_what_the_client_already_has(alice):
    task = await _running_task(alice, lines=50)
    await _finish(task)
    frames = await _until_closed(await _open(f"/ws/tasks/{task.id}/logs/?after_seq=45", alice))
    assert _seqs(frames) == [46, 47, 48, 49, 50]
    assert frames[0]["from_seq"] == 46


async def test_live_lines_progress_and_the_closing_status_arrive_in_order(alice):
    task = await _running_task(alice, lines=5)
    comm = await _open(f"/ws/tasks/{task.id}/logs/", alice)
    assert _seqs([await comm.receive_json_from(timeout=5)]) == [1, 2, 3, 4, 5]
    await _write_and_publish(task, [("INFO", "plugin", f"live {i}") for i in range(6, 11)])
    frame = await comm.receive_json_from(timeout=5)
    assert (frame["from_seq"], frame["to_seq"]) == (6, 10)
    assert [line["message"] for line in frame["lines"]] == [f"live {i}" for i in range(6, 11)]
    await sync_to_async(Task.objects.filter(pk=task.pk).update)(
        progress_done=1, progress_total=4, progress_message="copying"
    )
    await sync_to_async(realtime.publish_progress)(
        await sync_to_async(Task.objects.get)(pk=task.pk)
    )
    progress = await comm.receive_json_from(timeout=5)
    assert progress == {
        "type": "progress",
        "done": 1.0,
        "total": 4.0,
        "message": "copying",
        "percent": 25.0,
    }
    await _write_and_publish(task, [("ERROR", "plugin", "last words")])
    await _finish(task, TaskStatus.FAILED)
    rest = await _until_closed(comm)
    assert _seqs(rest) == [11]
    assert rest[-1]["type"] == "status" and rest[-1]["status"] == "FAILED"


async def test_filters_apply_to_backlog_and_live_lines(alice):
    task = await _running_task(alice)
    await sync_to_async(add_lines)(
        task,
        [("ERROR", "plugin", "bad 1"), ("INFO", "fetcher", "fine"), ("ERROR", "fetcher", "Bad 2")],
    )
    comm = await _open(f"/ws/tasks/{task.id}/logs/?level=ERROR&source=fetcher&search=bad", alice)
    first = await comm.receive_json_from(timeout=5)
    assert _seqs([first]) == [3]
    assert (first["from_seq"], first["to_seq"]) == (1, 3)
    await _write_and_publish(
        task,
        [
            ("INFO", "fetcher", "bad but info"),
            ("ERROR", "plugin", "bad elsewhere"),
            ("ERROR", "fetcher", "BAD 3"),
        ],
    )
    live = await comm.receive_json_from(timeout=5)
    assert (live["from_seq"], live["to_seq"], _seqs([live])) == (4, 6, [6])
    await _write_and_publish(task, [("INFO", "plugin", "unrelated")])
    await _finish(task)
    rest = await _until_closed(comm)
    assert rest == [rest[-1]]
    assert rest[-1]["type"] == "status" and rest[-1]["to_seq"] == 7


async def test_a_dropped_live_frame_is_filled_from_the_database(alice):
    task = await _running_task(alice, lines=2)
    comm = await _open(f"/ws/tasks/{task.id}/logs/", alice)
    assert _seqs([await comm.receive_json_from(timeout=5)]) == [1, 2]
    # Lines 3..40 are stored but only 31..40 reach the layer (as when a full channel drops).
    await _write_and_publish(
        task, [("INFO", "plugin", f"n{i}") for i in range(3, 41)], publish_from=31
    )
    await _finish(task)
    frames = await _until_closed(comm)
    assert _seqs(frames) == list(range(3, 41))
    _assert_consecutive(frames)


async def test_a_final_status_whose_last_lines_were_dropped_still_comes_after_them(alice):
    task = await _running_task(alice, lines=1)
    comm = await _open(f"/ws/tasks/{task.id}/logs/", alice)
    await comm.receive_json_from(timeout=5)
    await _write_and_publish(
        task, [("INFO", "plugin", "a"), ("INFO", "plugin", "b")], publish_from=99
    )
    await _finish(task)
    frames = await _until_closed(comm)
    assert _seqs(frames) == [2, 3]
    assert frames[-1]["type"] == "status"


async def test_a_client_can_ask_for_lines_again(alice):
    task = await _running_task(alice, lines=10)
    comm = await _open(f"/ws/tasks/{task.id}/logs/", alice)
    await comm.receive_json_from(timeout=5)
    await comm.send_json_to({"action": "resync", "after_seq": 7})
    again = await comm.receive_json_from(timeout=5)
    assert (again["from_seq"], _seqs([again])) == (8, [8, 9, 10])
    await comm.send_json_to({"action": "dance"})
    error = await comm.receive_json_from(timeout=5)
    assert error["type"] == "error"
    await _write_and_publish(task, [("INFO", "plugin", "eleven")])
    assert _seqs([await comm.receive_json_from(timeout=5)]) == [11]
    await comm.disconnect()


async def test_the_html_format_sends_escaped_fragments(alice):
    task = await _running_task(alice)
    await sync_to_async(add_lines)(task, [("ERROR", "plugin", "<script>alert(1)</script>")])
    await _finish(task)
    comm = await _open(f"/ws/tasks/{task.id}/logs/?format=html", alice)
    lines_html = (await comm.receive_output(timeout=5))["text"]
    assert f'id="task-{task.id}-logs"' in lines_html
    assert 'hx-swap-oob="beforeend"' in lines_html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in lines_html
    assert "<script>" not in lines_html
    status_html = (await comm.receive_output(timeout=5))["text"]
    assert f'id="task-{task.id}-status"' in status_html
    assert "Success" in status_html
    assert (await comm.receive_output(timeout=5))["type"] == "websocket.close"


# --- the live task list -------------------------------------------------------------------


async def test_the_task_list_socket_pushes_status_changes_a_user_may_see(alice, bob, charlie):
    plugin = await sync_to_async(make_plugin)()
    mine = await sync_to_async(make_task)(plugin, alice, status=TaskStatus.RUNNING)
    theirs = await sync_to_async(make_task)(plugin, charlie, status=TaskStatus.RUNNING)
    alice_sock = await _open("/ws/tasks/", alice)
    bob_sock = await _open("/ws/tasks/", bob)
    await _finish(theirs)
    await _finish(mine, TaskStatus.FAILED)
    seen_by_alice = await alice_sock.receive_json_from(timeout=5)
    assert (seen_by_alice["task_id"], seen_by_alice["status"]) == (str(mine.id), "FAILED")
    assert await alice_sock.receive_nothing(timeout=0.3)
    seen_by_bob = [await bob_sock.receive_json_from(timeout=5) for _ in range(2)]
    assert [e["task_id"] for e in seen_by_bob] == [str(theirs.id), str(mine.id)]
    await alice_sock.disconnect()
    await bob_sock.disconnect()


async def test_the_task_list_socket_refuses_anonymous_users(db):
    comm = await _socket("/ws/tasks/")
    connected, _ = await comm.connect(timeout=5)
    assert connected is False


async def test_a_script_may_follow_a_run_with_a_bearer_token_and_a_revoked_one_is_refused(alice):
    from accounts_app.models import ApiToken

    task = await _running_task(alice, lines=2)
    token, raw = await sync_to_async(ApiToken.issue)(user=alice)
    path = f"/ws/tasks/{task.id}/logs/"
    comm = WebsocketCommunicator(
        application, path, headers=[ORIGIN, (b"authorization", f"Bearer {raw}".encode())]
    )
    connected, _ = await comm.connect(timeout=5)
    assert connected
    assert _seqs([await comm.receive_json_from(timeout=5)]) == [1, 2]
    await comm.disconnect()
    await sync_to_async(token.revoke)()
    comm = WebsocketCommunicator(
        application, path, headers=[ORIGIN, (b"authorization", f"Bearer {raw}".encode())]
    )
    connected, _ = await comm.connect(timeout=5)
    assert connected is False


async def test_the_task_list_socket_in_html_sends_the_status_badge(alice):
    task = await _running_task(alice)
    comm = await _open("/ws/tasks/?format=html", alice)
    await _finish(task, TaskStatus.CANCELLED)
    html = (await comm.receive_output(timeout=5))["text"]
    assert f'id="task-{task.id}-status"' in html
    assert 'hx-swap-oob="true"' in html
    assert "Cancelled" in html
    await comm.disconnect()
