"""The plugins shipped in plugins/: they register cleanly and do their job.

They are imported here (tests are not the web server) and called with a small stand-in for
the run context that records what the plugin reported.
"""

from __future__ import annotations

import importlib.util
import logging
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.conf import settings
from jsonschema import Draft202012Validator

from plugins_app.models import Plugin
from plugins_app.services import plugins_discover

SHIPPED = Path(settings.BASE_DIR) / "plugins"


class RecordingContext:
    def __init__(self, cancel_after_progress: int | None = None):
        self.log = logging.getLogger("example-plugin")
        self.progress_calls: list[tuple[int, int | None, str]] = []
        self._cancel_after = cancel_after_progress

    def progress(self, current: int, total: int | None = None, message: str = "") -> None:
        self.progress_calls.append((current, total, message))

    @property
    def cancelled(self) -> bool:
        return self._cancel_after is not None and len(self.progress_calls) >= self._cancel_after


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", SHIPPED / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.django_db
def test_the_shipped_plugins_register_without_errors(settings):
    settings.PLUGINS_FOLDER = SHIPPED
    result = plugins_discover()
    assert result.errors == []
    plugins = {p.pk: p for p in Plugin.objects.all()}
    assert {"backup", "http-check", "system-report"} <= set(plugins)
    for pk in ("backup", "http-check", "system-report"):
        plugin = plugins[pk]
        assert plugin.takes_context and plugin.summary and plugin.version and plugin.timeout
        Draft202012Validator.check_schema(plugin.params_schema)
    backup = Draft202012Validator(plugins["backup"].params_schema)
    assert backup.is_valid({"source": "/etc"})
    assert not backup.is_valid({"source": "/etc", "compression": "zip"})
    assert not backup.is_valid({})


def _tree(root: Path, count: int) -> Path:
    source = root / "data"
    (source / "sub").mkdir(parents=True)
    for i in range(count):
        (source / ("sub" if i % 2 else "") / f"f{i}.txt").write_text(f"file {i}\n")
    return source


def test_backup_archives_the_directory_and_keeps_only_the_newest(tmp_path):
    backup = load("backup")
    source, dest = _tree(tmp_path, 5), tmp_path / "backups"
    (dest).mkdir()
    (dest / "data-old-20200101-000000-000000.tar.gz").write_text("another dir's archive")
    results = [
        backup.run(RecordingContext(), source=str(source), destination=str(dest), keep=2)
        for _ in range(3)
    ]
    archives = sorted(p.name for p in dest.glob("data-2*.tar.gz"))
    assert archives == sorted(Path(r["archive"]).name for r in results[1:])
    assert results[2]["removed"] == [results[0]["archive"]]
    assert (dest / "data-old-20200101-000000-000000.tar.gz").exists()
    with tarfile.open(results[2]["archive"]) as tar:
        assert "data/sub/f1.txt" in tar.getnames()
    assert results[2]["files"] == 5


def test_backup_writes_a_plain_tar_without_compression(tmp_path):
    result = load("backup").run(
        RecordingContext(), source=str(_tree(tmp_path, 2)), destination=str(tmp_path / "b"),
        compression="none",
    )  # fmt: skip
    assert result["archive"].endswith(".tar")
    with tarfile.open(result["archive"], "r:") as tar:
        assert len(tar.getnames()) == 2


def test_backup_refuses_a_source_that_is_not_a_directory(tmp_path):
    with pytest.raises(ValueError, match="not a directory"):
        load("backup").run(RecordingContext(), source=str(tmp_path / "nope"))


def test_a_cancelled_backup_leaves_no_partial_archive(tmp_path):
    backup = load("backup")
    dest = tmp_path / "b"
    with pytest.raises(backup.Cancelled):
        backup.run(
            RecordingContext(cancel_after_progress=1), source=str(_tree(tmp_path, 250)),
            destination=str(dest),
        )  # fmt: skip
    assert list(dest.iterdir()) == []


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/ok" else 500)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_check_reports_each_url_and_fails_when_one_is_down(http_server):
    http_check = load("http_check")
    urls = [f"{http_server}/ok", f"{http_server}/bad"]
    context = RecordingContext()
    result = http_check.run(context, urls=urls, fail_on_error=False)
    assert result["healthy"] == 1 and result["down"] == [urls[1]]
    assert [c["status"] for c in result["checks"]] == [200, 500]
    assert context.progress_calls[-1][:2] == (2, 2)
    with pytest.raises(RuntimeError, match="1 of 2 URLs unhealthy"):
        http_check.run(RecordingContext(), urls=urls)


def test_http_check_refuses_a_url_that_is_not_http():
    with pytest.raises(ValueError, match="not an http"):
        load("http_check").run(RecordingContext(), urls=["file:///etc/passwd"])


def test_system_report_measures_disk_memory_and_load(tmp_path):
    result = load("system_report").run(RecordingContext(), paths=["/", str(tmp_path / "nope")])
    root, missing = result["disks"]
    assert 0 <= root["used_percent"] <= 100 and root["total_bytes"] > 0
    assert "error" in missing and any("nope" in w for w in result["warnings"])
    assert result["memory"]["total_bytes"] > 0
    assert len(result["load"]) == 3
