"""The acceptance flow in real Chromium against real daphne, worker, Redis and database."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import log_in, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.worker]

UUID = r"[0-9a-f-]{36}"


def log_lines(page):
    return page.locator(".log-lines .log-line")


def seq_list(page) -> list[int]:
    return [int(s) for s in log_lines(page).evaluate_all("els => els.map(e => e.dataset.seq)")]


def progress_value(page) -> int:
    value = page.locator("[role=progressbar]").get_attribute("aria-valuenow")
    return int(value or 0)


def start_from_form(page, **values) -> str:
    """Fill the slow-report form and submit it; returns the new task's id."""
    page.goto("/plugins/slow-report/")
    for name, value in values.items():
        page.fill(f"[name=param-{name}]", str(value))
    page.click("button.primary")
    page.wait_for_url(re.compile(rf"/tasks/{UUID}/$"))
    return page.url.rstrip("/").rsplit("/", 1)[1]


def test_run_a_plugin_from_its_form_and_watch_its_log_live(page, alice):
    log_in(page, "alice", "alice-pass-123")
    page.click("nav >> text=Plugins")
    page.click("a[href='/plugins/slow-report/']")
    page.wait_for_url("**/plugins/slow-report/")
    expect(page.locator("form.run-form")).to_be_visible()
    expect(page.locator("[name=param-lines]")).to_have_value("20")  # default filled in
    expect(page.locator("#field-param-lines .help")).to_have_text("how many lines to log")
    screenshot(page, "plugin-page.png")

    # A value the schema refuses: the error is next to the field and the input is kept.
    page.fill("[name=param-lines]", "0")
    page.fill("[name=param-label]", "kept text")
    page.click("button.primary")
    expect(page.locator("#field-param-lines .field-error")).to_have_text(
        "0 is less than the minimum of 1"
    )
    expect(page.locator("[name=param-lines]")).to_have_value("0")
    expect(page.locator("[name=param-label]")).to_have_value("kept text")
    assert "/plugins/slow-report/" in page.url

    # The right value starts the run and lands on its page.
    page.fill("[name=param-lines]", "60")
    page.fill("[name=param-delay]", "0.15")
    page.fill("[name=param-label]", "demo")
    page.click("button.primary")
    page.wait_for_url(re.compile(rf"/tasks/{UUID}/$"))
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads

    # Lines arrive over the socket while it runs, and the progress bar moves.
    expect(page.locator("#log-live")).to_have_text("live")
    expect(page.locator(".badge.st-RUNNING")).to_be_visible()
    expect(log_lines(page).first).to_be_visible()
    first_count, first_progress = log_lines(page).count(), progress_value(page)
    page.wait_for_function(
        f"document.querySelectorAll('.log-lines .log-line').length > {first_count + 5}"
    )
    page.wait_for_function(
        f"+document.querySelector('[role=progressbar]').getAttribute('aria-valuenow') > "
        f"{first_progress + 5}"
    )
    screenshot(page, "task-running.png")
    seqs = seq_list(page)
    assert seqs == list(range(1, len(seqs) + 1))  # contiguous, none twice

    # Filter by level: only ERROR lines, live ones included.
    for level in ("DEBUG", "INFO", "WARNING"):
        page.uncheck(f"#log-filter input[value={level}]")
    expect(log_lines(page).first).to_have_class(re.compile("lvl-ERROR"))
    page.wait_for_timeout(1200)  # let a few live lines arrive under the filter
    levels = log_lines(page).evaluate_all("els => els.map(e => e.className)")
    assert levels and all("lvl-ERROR" in c for c in levels), levels

    # Filter by source.
    for level in ("DEBUG", "INFO", "WARNING"):
        page.check(f"#log-filter input[value={level}]")
    page.select_option("#log-source", "fetcher")
    expect(log_lines(page).first.locator(".log-source")).to_have_text("fetcher")
    sources = page.locator(".log-lines .log-source").all_inner_texts()
    assert sources and set(sources) == {"fetcher"}

    # Search text (debounced as it is typed).
    page.select_option("#log-source", "")
    page.fill("#log-search", "info line 1")
    expect(log_lines(page).first.locator(".log-msg")).to_contain_text("info line 1")
    page.wait_for_timeout(600)
    messages = page.locator(".log-lines .log-msg").all_inner_texts()
    assert messages and all("info line 1" in m for m in messages), messages

    # It finishes without a reload: status, full progress, the result.
    page.fill("#log-search", "")
    expect(page.locator(".badge.st-SUCCESS")).to_have_text("Success", timeout=30_000)
    expect(page.locator("#log-live")).to_have_text("finished")
    expect(page.locator("pre.json").last).to_contain_text('"lines": 60')
    assert page.evaluate("window.__sameDocument") is True
    from tasks_app.models import Task

    total = Task.objects.get(pk=page.url.rstrip("/").rsplit("/", 1)[1]).log_total
    assert total > 60  # the plugin's 60 lines and the engine's own
    page.wait_for_function(f"document.querySelectorAll('.log-lines .log-line').length === {total}")
    assert seq_list(page) == list(range(1, total + 1))
    assert page.js_errors == []


def test_cancel_a_long_running_task(page, alice):
    from tasks_app.models import Task, TaskStatus

    log_in(page, "alice", "alice-pass-123")
    task_id = start_from_form(page, lines=2000, delay=0.2)
    expect(page.locator(".badge.st-RUNNING")).to_be_visible()
    expect(log_lines(page).first).to_be_visible()
    page.click("#cancel-button")
    page.wait_for_url(re.compile(rf"/tasks/{task_id}/$"))
    expect(page.locator(".badge.st-CANCELLED")).to_have_text("Cancelled", timeout=30_000)
    expect(page.locator("#cancel-button")).to_have_count(0)
    # The plugin saw context.cancelled and said so before the run ended.
    expect(page.locator(".log-msg", has_text="stopping at line")).to_have_count(1)
    assert Task.objects.get(pk=task_id).status == TaskStatus.CANCELLED
    assert page.js_errors == []


def test_the_task_list_updates_statuses_without_reloading(page, alice):
    from plugins_app.models import Plugin
    from tasks_app.services import task_create

    log_in(page, "alice", "alice-pass-123")
    plugin = Plugin.objects.get(pk="slow-report")
    done = task_create(plugin=plugin, params={"lines": 1, "delay": 0}, user=alice)
    page.goto("/tasks/")
    expect(page.locator(f"#task-{done.pk}-status")).to_have_text("Success", timeout=30_000)

    page.evaluate("window.__sameDocument = true")
    expect(page.locator("#tasks-live")).to_have_text("live")
    task = task_create(plugin=plugin, params={"lines": 12, "delay": 0.25}, user=alice)
    # The new row is not on the page yet; a status event for it arrives anyway, and once the
    # list is refreshed by a filter change (HTMX) its badge keeps updating live.
    page.select_option("select[name=status]", "")
    page.reload()
    page.evaluate("window.__sameDocument = true")
    badge = page.locator(f"#task-{task.pk}-status")
    expect(badge).to_have_text(re.compile("Pending|Running"))
    expect(page.locator("#tasks-live")).to_have_text("live")
    expect(badge).to_have_text("Running", timeout=20_000)
    screenshot(page, "task-list.png")
    expect(badge).to_have_text("Success", timeout=30_000)
    assert page.evaluate("window.__sameDocument") is True
    assert page.js_errors == []


def test_plugin_output_that_looks_like_markup_shows_as_text(page, alice):
    from plugins_app.models import Plugin
    from tasks_app.services import task_create

    log_in(page, "alice", "alice-pass-123")
    task = task_create(plugin=Plugin.objects.get(pk="shouty"), params={}, user=alice)
    page.goto(f"/tasks/{task.pk}/")  # while it sleeps: the lines arrive over the socket
    expect(page.locator(".badge.st-SUCCESS")).to_be_visible(timeout=30_000)
    messages = page.locator(".log-lines .log-msg").all_inner_texts()
    assert "<script>window.__pwned = true</script>" in messages
    assert any(m.startswith('<button id="evil" hx-get=') for m in messages)
    page.wait_for_timeout(500)
    assert page.evaluate("window.__pwned") is None
    expect(page.locator("#evil")).to_have_count(0)
    expect(page.locator(".log-lines img")).to_have_count(0)
    assert page.locator(".log-lines").get_attribute("hx-disable") is not None
    # And the same on a fresh load of the finished run (rendered by the page, not the socket).
    page.reload()
    assert "<script>window.__pwned = true</script>" in page.locator(".log-msg").all_inner_texts()
    assert page.evaluate("window.__pwned") is None
    assert page.js_errors == []


def test_another_users_task_page_is_not_found_in_the_browser(page, alice, charlie):
    from plugins_app.models import Plugin
    from tasks_app.services import task_create

    task = task_create(plugin=Plugin.objects.get(pk="shouty"), params={"pause": 0}, user=alice)
    log_in(page, "charlie", "charlie-pass-123")
    response = page.goto(f"/tasks/{task.pk}/")
    assert response.status == 404
    time.sleep(0)  # nothing to wait for: the refusal is immediate
