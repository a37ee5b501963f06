from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from octopus.views import hourly_chart
from plugins_app.models import Plugin
from tasks_app.models import Task, TaskStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def plugin():
    return Plugin.objects.create(id="report", name="Report", file_path="report.py")


def make(plugin, user, status, *, hours_ago=0.0, error=""):
    return Task.objects.create(
        plugin=plugin,
        user=user,
        status=status,
        error=error,
        created_at=timezone.now() - timedelta(hours=hours_ago),
    )


def stat(html: str, label: str) -> int:
    match = re.search(rf'<span class="stat-n">(\d+)</span><span class="stat-label">{label}<', html)
    assert match, label
    return int(match.group(1))


def test_the_dashboard_counts_the_last_24_hours_by_status(client, alice, plugin):
    make(plugin, alice, TaskStatus.SUCCESS, hours_ago=1)
    make(plugin, alice, TaskStatus.SUCCESS, hours_ago=5)
    make(plugin, alice, TaskStatus.FAILED, hours_ago=2, error="disk full")
    make(plugin, alice, TaskStatus.SUCCESS, hours_ago=30)  # too old to count
    client.force_login(alice)
    html = client.get("/").content.decode()
    assert stat(html, "Runs") == 3
    assert stat(html, "Success") == 2 and stat(html, "Failed") == 1 and stat(html, "Running") == 0
    assert "disk full" in html  # recent failures


def test_the_dashboard_counts_only_runs_the_user_may_see(client, alice, bob, plugin):
    make(plugin, bob, TaskStatus.FAILED, error="bob's secret")
    make(plugin, alice, TaskStatus.SUCCESS)
    client.force_login(alice)
    html = client.get("/").content.decode()
    assert stat(html, "Runs") == 1 and "bob&#x27;s secret" not in html
    client.force_login(bob)
    assert stat(client.get("/").content.decode(), "Runs") == 2


def test_running_now_is_a_polled_fragment(client, alice, plugin):
    running = make(plugin, alice, TaskStatus.RUNNING)
    client.force_login(alice)
    html = client.get("/?part=running", headers={"HX-Request": "true"}).content.decode()
    assert html.lstrip().startswith('<div id="running-now"') and 'hx-trigger="every 3s"' in html
    assert f"/tasks/{running.pk}/" in html and "<html" not in html


def test_the_chart_draws_one_stacked_bar_per_hour(client, alice, plugin):
    make(plugin, alice, TaskStatus.SUCCESS)
    make(plugin, alice, TaskStatus.SUCCESS)
    make(plugin, alice, TaskStatus.FAILED)
    client.force_login(alice)
    html = client.get("/").content.decode()
    svg = re.search(r"<svg class=\"chart\".*?</svg>", html, re.S).group(0)
    assert svg.count("<g transform=") == 24
    assert svg.count('class="seg st-SUCCESS"') == 1 and svg.count('class="seg st-FAILED"') == 1
    assert "2 success" in svg and "1 failed" in svg


def test_hourly_chart_scales_bars_to_the_busiest_hour():
    now = timezone.now()
    hour = now.replace(minute=0, second=0, microsecond=0)
    rows = [
        {"hour": hour, "status": "SUCCESS", "n": 3},
        {"hour": hour, "status": "FAILED", "n": 1},
        {"hour": hour - timedelta(hours=2), "status": "SUCCESS", "n": 2},
        {"hour": hour - timedelta(hours=40), "status": "SUCCESS", "n": 9},
    ]
    chart = hourly_chart(rows, now)
    last, two_ago = chart["bars"][-1], chart["bars"][-3]
    assert chart["peak"] == 4 and last["total"] == 4
    assert [s["height"] for s in last["segments"]] == [90.0, 30.0]
    assert two_ago["segments"][0]["height"] == 60.0
    assert sum(bar["total"] for bar in chart["bars"]) == 6
