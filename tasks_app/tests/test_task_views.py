from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from plugins_app.models import Plugin
from tasks_app.models import LogLevel, Task, TaskLog, TaskStatus
from tasks_app.views import LOG_TAIL

pytestmark = pytest.mark.django_db


@pytest.fixture
def plugin():
    return Plugin.objects.create(
        id="slow",
        name="Slow",
        file_path="slow.py",
        sha256="c" * 64,
        is_active=True,
        params_schema={"type": "object", "properties": {"n": {"type": "integer"}}},
    )


@pytest.fixture
def task(plugin, alice):
    return Task.objects.create(
        plugin=plugin,
        user=alice,
        params={"n": 3},
        status=TaskStatus.RUNNING,
        started_at=timezone.now(),
    )


def add_lines(task, specs):
    """specs: (level, source, message) triples; seq continues from the task's last line."""
    start = TaskLog.objects.filter(task=task).count()
    TaskLog.objects.bulk_create(
        TaskLog(
            task=task,
            seq=start + i,
            timestamp=timezone.now(),
            level=level,
            source=source,
            message=message,
        )
        for i, (level, source, message) in enumerate(specs, 1)
    )


def seqs(html: str) -> list[int]:
    return [int(s) for s in re.findall(r'class="log-line[^"]*" data-seq="(\d+)"', html)]


def test_the_task_page_shows_status_params_progress_and_the_log(client, alice, task):
    task.progress_done, task.progress_total, task.progress_message = 1, 4, "copying"
    task.save()
    add_lines(task, [(LogLevel.INFO, "plugin", "hello"), (LogLevel.ERROR, "fetcher", "boom")])
    client.force_login(alice)
    html = client.get(f"/tasks/{task.pk}/").content.decode()
    assert f'id="task-{task.pk}-status"' in html and "Running" in html
    assert 'aria-valuenow="25"' in html and "copying" in html
    assert "&quot;n&quot;: 3" in html
    assert seqs(html) == [1, 2]
    assert 'class="log-line lvl-ERROR" data-seq="2"' in html
    assert f'data-live="/ws/tasks/{task.pk}/logs/?format=html&amp;after_seq=2"' in html
    assert f'id="task-{task.pk}-logs" class="log-lines" hx-disable' in html
    assert f'action="/tasks/{task.pk}/cancel/"' in html


def test_log_text_is_escaped_so_plugin_output_never_becomes_markup(client, alice, task):
    add_lines(task, [(LogLevel.INFO, "stdout", '<script>alert(1)</script> <b hx-get="/x">')])
    client.force_login(alice)
    html = client.get(f"/tasks/{task.pk}/").content.decode()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &lt;b hx-get=&quot;/x&quot;&gt;" in html


def test_the_page_shows_only_the_newest_lines_and_loads_earlier_ones_by_seq(client, alice, task):
    add_lines(task, [(LogLevel.INFO, "plugin", f"line {i}") for i in range(1, LOG_TAIL + 121)])
    client.force_login(alice)
    html = client.get(f"/tasks/{task.pk}/").content.decode()
    assert seqs(html) == list(range(121, LOG_TAIL + 121))
    assert "before_seq=121" in html
    earlier = client.get(f"/tasks/{task.pk}/logs/?before_seq=121", headers={"HX-Request": "true"})
    page = earlier.content.decode()
    assert seqs(page) == list(range(1, 121))
    assert '<div id="log-earlier" hx-swap-oob="true">' in page and "Load earlier" not in page


def test_the_log_filter_narrows_by_level_source_and_text(client, alice, task):
    add_lines(
        task,
        [
            (LogLevel.INFO, "plugin", "alpha"),
            (LogLevel.WARNING, "fetcher", "beta"),
            (LogLevel.ERROR, "plugin", "gamma"),
            (LogLevel.DEBUG, "fetcher", "alphabet"),
        ],
    )
    client.force_login(alice)
    url = f"/tasks/{task.pk}/logs/"
    hx = {"HX-Request": "true"}
    errors_and_warnings = client.get(url + "?level=ERROR&level=WARNING", headers=hx)
    assert seqs(errors_and_warnings.content.decode()) == [2, 3]
    assert seqs(client.get(url + "?source=fetcher", headers=hx).content.decode()) == [2, 4]
    assert seqs(client.get(url + "?search=ALPHA", headers=hx).content.decode()) == [1, 4]
    body = client.get(url + "?level=INFO&source=plugin&search=al", headers=hx).content.decode()
    assert seqs(body) == [1]
    # The live socket gets the same filter, and starts after the newest stored line.
    assert "level=INFO&amp;source=plugin&amp;search=al&amp;format=html&amp;after_seq=4" in body


def test_a_bad_log_filter_is_a_400_with_the_reason(client, alice, task):
    client.force_login(alice)
    url = f"/tasks/{task.pk}/logs/"
    response = client.get(url + "?level=LOUD")
    assert response.status_code == 400 and "unknown level" in response.content.decode()
    assert client.get(url + "?before_seq=abc").status_code == 400
    assert client.get(url + "?before_seq=99999999999").status_code == 400


def test_another_users_task_is_404_unless_they_may_view_all(client, alice, bob, charlie, task):
    client.force_login(charlie)
    assert client.get(f"/tasks/{task.pk}/").status_code == 404
    assert client.get(f"/tasks/{task.pk}/logs/").status_code == 404
    assert client.post(f"/tasks/{task.pk}/cancel/").status_code == 404
    client.force_login(bob)
    assert client.get(f"/tasks/{task.pk}/").status_code == 200


def test_an_unknown_task_is_404(client, alice):
    client.force_login(alice)
    assert client.get("/tasks/00000000-0000-0000-0000-000000000000/").status_code == 404


def test_cancelling_a_pending_task_cancels_it(client, alice, plugin):
    pending = Task.objects.create(plugin=plugin, user=alice)
    client.force_login(alice)
    response = client.post(f"/tasks/{pending.pk}/cancel/")
    assert response.status_code == 302 and response["Location"] == f"/tasks/{pending.pk}/"
    pending.refresh_from_db()
    assert pending.status == TaskStatus.CANCELLED


def test_cancelling_a_running_task_asks_the_worker_to_stop(client, alice, task):
    client.force_login(alice)
    client.post(f"/tasks/{task.pk}/cancel/")
    task.refresh_from_db()
    assert task.status == TaskStatus.RUNNING and task.cancel_requested_at is not None
    assert "Cancelling…" in client.get(f"/tasks/{task.pk}/").content.decode()


def test_cancelling_a_finished_task_changes_nothing(client, alice, task):
    task.mark_finished(TaskStatus.SUCCESS, result={"ok": True})
    client.force_login(alice)
    client.post(f"/tasks/{task.pk}/cancel/")
    task.refresh_from_db()
    assert task.status == TaskStatus.SUCCESS
    html = client.get(f"/tasks/{task.pk}/").content.decode()
    assert "already finished" in html and 'action="/tasks/' + str(task.pk) + '/cancel/"' not in html
    assert "data-live" not in html  # nothing more will come


def test_forms_without_csrf_are_refused(alice, task):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(alice)
    assert strict.post(f"/tasks/{task.pk}/cancel/").status_code == 403
    assert strict.post(f"/tasks/{task.pk}/rerun/").status_code == 403
    task.refresh_from_db()
    assert task.cancel_requested_at is None and Task.objects.count() == 1


def test_run_again_starts_a_new_task_with_the_same_params(client, alice, task):
    client.force_login(alice)
    response = client.post(f"/tasks/{task.pk}/rerun/")
    new = Task.objects.exclude(pk=task.pk).get()
    assert response["Location"] == f"/tasks/{new.pk}/"
    assert new.params == {"n": 3} and new.status == TaskStatus.PENDING


def test_run_again_needs_the_run_permission(client, charlie, plugin):
    mine = Task.objects.create(plugin=plugin, user=charlie)
    client.force_login(charlie)
    assert client.post(f"/tasks/{mine.pk}/rerun/").status_code == 403
    assert Task.objects.count() == 1


def test_run_again_of_an_inactive_plugin_says_why(client, alice, task, plugin):
    plugin.is_active = False
    plugin.save()
    client.force_login(alice)
    response = client.post(f"/tasks/{task.pk}/rerun/", follow=True)
    assert "Not started again: the plugin slow is not active" in response.content.decode()
    assert Task.objects.count() == 1


def test_the_task_list_shows_own_runs_with_duration_and_counts(client, alice, bob, task, plugin):
    task.log_warning, task.log_error = 2, 1
    task.save()
    other = Task.objects.create(plugin=plugin, user=bob)
    client.force_login(alice)
    html = client.get("/tasks/").content.decode()
    assert f'id="task-{task.pk}-row"' in html and f'id="task-{other.pk}-row"' not in html
    assert f'id="task-{task.pk}-status"' in html
    assert '<span class="lvl-WARNING">2</span> / <span class="lvl-ERROR">1</span>' in html
    assert 'data-live="/ws/tasks/?format=html"' in html
    client.force_login(bob)
    assert f'id="task-{task.pk}-row"' in client.get("/tasks/").content.decode()


def test_the_task_list_filters_by_status_plugin_user_and_date(client, bob, alice, plugin):
    other = Plugin.objects.create(id="other", name="Other", file_path="other.py")
    old = Task.objects.create(
        plugin=plugin,
        user=alice,
        status=TaskStatus.FAILED,
        created_at=timezone.now() - timedelta(days=3),
    )
    new = Task.objects.create(plugin=other, user=bob, status=TaskStatus.SUCCESS)
    client.force_login(bob)

    def rows(query):
        html = client.get("/tasks/?" + query).content.decode()
        return {t for t in (old, new) if f'id="task-{t.pk}-row"' in html}

    assert rows("status=FAILED") == {old}
    assert rows("plugin=other") == {new}
    assert rows("user=alice") == {old}
    today = timezone.now().date()
    assert rows(f"since={today}") == {new}
    assert rows(f"until={today - timedelta(days=1)}") == {old}


def test_a_bad_task_list_filter_is_a_400_that_says_why(client, alice, task):
    client.force_login(alice)
    response = client.get("/tasks/?status=SOMETIMES&since=yesterday")
    html = response.content.decode()
    assert response.status_code == 400
    assert "Select a valid choice" in html and "Enter a valid date" in html
    assert f'id="task-{task.pk}-row"' not in html


def test_the_task_list_is_paged_and_keeps_filters_in_page_links(client, alice, plugin):
    Task.objects.bulk_create(Task(plugin=plugin, user=alice) for _ in range(60))
    client.force_login(alice)
    first = client.get("/tasks/?status=PENDING").content.decode()
    assert first.count('-row"') == 50 and 'href="?status=PENDING&amp;page=2"' in first
    second = client.get("/tasks/?status=PENDING&page=2").content.decode()
    assert second.count('-row"') == 10


def test_htmx_filtering_gets_only_the_table(client, alice, task):
    client.force_login(alice)
    html = client.get("/tasks/?status=RUNNING", headers={"HX-Request": "true"}).content.decode()
    assert html.lstrip().startswith('<div id="task-table"') and "<html" not in html


def test_an_empty_task_list_is_a_200_not_an_error(client, charlie):
    # A new user has no runs yet: the page is empty, not a bad request.
    client.force_login(charlie)
    response = client.get("/tasks/")
    assert response.status_code == 200
    assert response.context["page"] is not None
    assert len(response.context["page"]) == 0
