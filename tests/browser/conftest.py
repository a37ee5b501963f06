"""Browser-test fixtures: a real daphne (HTTP + WebSockets), a real Celery worker, Chromium.

The server and the worker are child processes pointed at the test database and the test
Redis; Chromium (Debian's, driven by Playwright) talks to the server over a real socket. Test
plugins are files in a temporary PLUGINS_FOLDER registered through discovery.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import BASE_DIR, subprocess_env

CHROMIUM = os.environ.get("OCTOPUS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run",
]  # fmt: skip
SCREENSHOTS = BASE_DIR / "docs" / "screenshots"

# A plugin that logs at every level and from two sources, reports progress and honours cancel.
SLOW_PLUGIN = '''
"""Count slowly, logging at every level.

Logs INFO lines from `plugin`, WARNING lines from `fetcher`, an ERROR every fifth line, and
reports progress after each line.
"""
import time

__version__ = "1.0.0"
__author__ = "Browser tests"
PARAMS_SCHEMA = {
    "type": "object",
    "properties": {
        "lines": {"type": "integer", "minimum": 1, "maximum": 100000, "default": 20,
                  "description": "how many lines to log"},
        "delay": {"type": "number", "minimum": 0, "default": 0.2,
                  "description": "seconds between lines"},
        "label": {"type": "string", "default": "run", "description": "a word for each line"},
        "mode": {"enum": ["steady", "bursty"], "default": "steady"},
    },
    "additionalProperties": False,
}


def run(context, lines=20, delay=0.2, label="run", mode="steady"):
    fetcher = context.log.source("fetcher")
    for i in range(1, lines + 1):
        if context.cancelled:
            context.log.warning("stopping at line %d: cancelled", i)
            return {"stopped_at": i}
        if i % 5 == 0:
            context.log.error("%s error line %d", label, i)
        elif i % 3 == 0:
            fetcher.warning("%s fetcher line %d", label, i)
        else:
            context.log.info("%s info line %d", label, i)
        context.progress(i, total=lines, message=f"line {i} of {lines}")
        time.sleep(delay)
    return {"lines": lines}
'''

# A plugin whose output looks like markup and htmx attributes: it must show as text.
SHOUTY_PLUGIN = '''
"""Print text that looks like markup."""
import time


def run(context, pause: float = 1.0):
    time.sleep(pause)
    print('<script>window.__pwned = true</script>')
    context.log.warning('<img src=x onerror="window.__pwned = true">')
    context.log.info('<button id="evil" hx-get="/api/v1/plugins" hx-trigger="load">x</button>')
    time.sleep(pause)
    return "<b>done</b>"
'''


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class DaphneServer:
    """`daphne octopus.asgi:application` on a free port against the test database."""

    def __init__(self, plugins_folder: Path):

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = BASE_DIR / "var" / f"daphne-{self.port}.log"
        self.env = subprocess_env(PLUGINS_FOLDER=str(plugins_folder))
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30) -> DaphneServer:
        return self.launch().wait(timeout)

    def launch(self) -> DaphneServer:
        self.log_path.parent.mkdir(exist_ok=True)
        self._log = open(self.log_path, "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port),
             "octopus.asgi:application"],
            cwd=BASE_DIR, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        return self

    def wait(self, timeout: float = 30) -> DaphneServer:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daphne exited early:\n{self.output()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + "/login/", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"daphne not ready in {timeout}s:\n{self.output()[-3000:]}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:
            self._log.close()


@pytest.fixture
def browser_plugins(tmp_path, settings, admin_user_obj):
    """The test plugins in a folder of this test's own, discovered and activated."""
    from plugins_app.models import Plugin
    from plugins_app.services import plugin_activate, plugins_discover

    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "slow_report.py").write_text(textwrap.dedent(SLOW_PLUGIN).lstrip())
    (folder / "shouty.py").write_text(textwrap.dedent(SHOUTY_PLUGIN).lstrip())
    settings.PLUGINS_FOLDER = folder
    settings.PLUGINS_AUTO_ACTIVATE = False
    plugins_discover()
    plugins = {p.pk: p for p in Plugin.objects.all()}
    assert set(plugins) == {"slow-report", "shouty"}, {p: p.discovery_error for p in plugins}
    for plugin in plugins.values():
        plugin_activate(plugin=plugin, user=admin_user_obj)
    return folder


@pytest.fixture
def live_server_daphne(transactional_db, browser_plugins, worker_factory):
    """A real daphne serving the app, and one real worker, both on the test database."""
    server = DaphneServer(browser_plugins).launch()  # starts while the worker does
    try:
        worker_factory()
        server.wait()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def chromium():
    """Chromium for one test module. Playwright's sync API keeps an event loop in this
    thread while the module runs, so Django's async-unsafe guard is lifted for exactly that
    long: the tests' ORM calls (and the database flush after each) are plain sync code."""
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} is missing: apt-get install chromium (or set OCTOPUS_CHROMIUM)",
            pytrace=False,
        )
    from playwright.sync_api import sync_playwright

    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(chromium, live_server_daphne):
    context = chromium.new_context(
        base_url=live_server_daphne.url, viewport={"width": 1280, "height": 860}
    )
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.js_errors = errors
    yield page
    context.close()


def log_in(page, username: str, password: str) -> None:
    page.goto("/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url("**/")


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    page.screenshot(path=str(path), full_page=True)
    return path
