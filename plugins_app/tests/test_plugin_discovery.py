"""plugins_discover(): files on disk → Plugin and PluginVersion rows."""

from __future__ import annotations

import hashlib
import os

import pytest

from plugins_app.discovery import MAX_PLUGIN_BYTES
from plugins_app.models import Plugin, PluginVersion
from plugins_app.services import plugins_discover

pytestmark = pytest.mark.django_db

BACKUP = '''
"""Archive a directory into a timestamped tar.gz.

Longer text shown on the plugin page.
"""
__version__ = "1.2.0"
__author__ = "Ops team"

def run(context, source: str, keep: int = 5) -> dict:
    """Args:
        source: directory to archive
    """
    return {}
'''


def test_it_registers_a_new_file_inactive_with_its_metadata_hashes_and_first_version(
    write_plugin,
):
    path = write_plugin("backup_tool.py", BACKUP)
    result = plugins_discover()
    assert result.added == ["backup-tool"]
    plugin = Plugin.objects.get(pk="backup-tool")
    data = path.read_bytes()
    assert plugin.summary == "Archive a directory into a timestamped tar.gz."
    assert plugin.description == "Longer text shown on the plugin page."
    assert (plugin.version, plugin.author, plugin.name) == ("1.2.0", "Ops team", "Backup tool")
    assert plugin.file_path == "backup_tool.py"
    assert plugin.sha256 == hashlib.sha256(data).hexdigest()
    assert plugin.md5 == hashlib.md5(data).hexdigest()
    assert plugin.size == len(data)
    assert plugin.mtime.timestamp() == pytest.approx(os.stat(path).st_mtime, abs=1e-3)
    assert plugin.takes_context
    assert plugin.params_schema["properties"]["source"]["description"] == "directory to archive"
    assert not plugin.is_active and not plugin.discovery_error
    (version,) = plugin.versions.all()
    assert (version.sha256, version.version, version.source) == (
        plugin.sha256,
        "1.2.0",
        data.decode(),
    )


def test_it_activates_new_plugins_when_auto_activate_is_set(write_plugin, settings):
    settings.PLUGINS_AUTO_ACTIVATE = True
    write_plugin("good.py", BACKUP)
    write_plugin("broken.py", "def run(:\n")
    plugins_discover()
    assert Plugin.objects.get(pk="good").is_active
    assert not Plugin.objects.get(pk="broken").is_active


def test_it_leaves_unchanged_files_alone_on_a_second_pass(write_plugin):
    write_plugin("backup.py", BACKUP)
    plugins_discover()
    before = Plugin.objects.get(pk="backup").updated_at
    result = plugins_discover()
    assert (result.added, result.updated, result.unchanged) == ([], [], ["backup"])
    assert Plugin.objects.get(pk="backup").updated_at == before
    assert PluginVersion.objects.count() == 1


def test_a_changed_file_updates_the_metadata_and_grows_the_version_history(write_plugin):
    path = write_plugin("backup.py", BACKUP)
    plugins_discover()
    Plugin.objects.filter(pk="backup").update(is_active=True)
    path.write_text(BACKUP.replace("1.2.0", "1.3.0"))
    result = plugins_discover()
    assert result.updated == ["backup"]
    plugin = Plugin.objects.get(pk="backup")
    assert plugin.version == "1.3.0"
    assert plugin.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert plugin.is_active, "an edit does not change who may run it"
    assert list(plugin.versions.values_list("version", flat=True)) == ["1.3.0", "1.2.0"]


def test_going_back_to_an_earlier_content_adds_no_duplicate_version(write_plugin):
    path = write_plugin("backup.py", BACKUP)
    plugins_discover()
    path.write_text(BACKUP.replace("1.2.0", "1.3.0"))
    plugins_discover()
    path.write_text(BACKUP.lstrip())
    result = plugins_discover()
    assert result.updated == ["backup"]
    assert Plugin.objects.get(pk="backup").version == "1.2.0"
    assert PluginVersion.objects.filter(plugin_id="backup").count() == 2


def test_a_vanished_file_is_marked_missing_not_deleted_and_comes_back(write_plugin):
    path = write_plugin("backup.py", BACKUP)
    plugins_discover()
    path.unlink()
    result = plugins_discover()
    assert result.missing == ["backup"]
    assert Plugin.objects.get(pk="backup").is_missing
    assert PluginVersion.objects.filter(plugin_id="backup").count() == 1
    assert plugins_discover().missing == [], "reported once, when it goes"
    write_plugin("backup.py", BACKUP)
    assert plugins_discover().updated == ["backup"]
    assert not Plugin.objects.get(pk="backup").is_missing


def test_a_broken_file_is_listed_with_its_line_and_the_others_are_registered(write_plugin):
    write_plugin("good.py", BACKUP)
    write_plugin("broken.py", "def run(context):\n    return {\n")
    result = plugins_discover()
    assert sorted(result.added) == ["broken", "good"]
    broken = Plugin.objects.get(pk="broken")
    assert broken.discovery_error.startswith("line 2:")
    assert not broken.is_runnable
    assert [(e.plugin_id, e.message) for e in result.errors] == [("broken", broken.discovery_error)]
    assert not Plugin.objects.get(pk="good").discovery_error
    assert broken.versions.count() == 1, "kept, so a fix can be rolled back to"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("PARAMS_SCHEMA = {'type': 'objekt'}\ndef run(context):\n    pass\n", "line 1: PARAMS"),
        ("def helper():\n    pass\n", "no top-level `def run(...)`"),
        ("TIMEOUT = 'soon'\ndef run():\n    pass\n", "line 1: TIMEOUT"),
    ],
)
def test_a_file_that_cannot_run_is_listed_with_its_error_and_never_activated(
    write_plugin, settings, source, message
):
    settings.PLUGINS_AUTO_ACTIVATE = True
    write_plugin("good.py", BACKUP)
    write_plugin("bad.py", source)
    result = plugins_discover()
    bad = Plugin.objects.get(pk="bad")
    assert bad.discovery_error.startswith(message)
    assert not bad.is_active and not bad.is_runnable
    assert [e.plugin_id for e in result.errors] == ["bad"]
    assert Plugin.objects.get(pk="good").is_runnable


def test_breaking_a_registered_file_keeps_its_last_good_metadata(write_plugin):
    path = write_plugin("backup.py", BACKUP)
    plugins_discover()
    path.write_text(BACKUP + "\ndef oops(:\n")
    result = plugins_discover()
    plugin = Plugin.objects.get(pk="backup")
    assert result.updated == ["backup"]
    assert plugin.discovery_error.startswith("line ")
    assert plugin.summary == "Archive a directory into a timestamped tar.gz."
    assert plugin.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    path.write_text(BACKUP)
    plugins_discover()
    assert not Plugin.objects.get(pk="backup").discovery_error


def test_it_never_imports_or_runs_a_plugin_file(write_plugin, tmp_path):
    marker = tmp_path / "imported.marker"
    write_plugin(
        "harmful.py",
        f'''
        """Looks innocent."""
        import pathlib
        pathlib.Path({str(marker)!r}).write_text("ran at import")
        TIMEOUT = 10

        def run(context, x: int = 1):
            pathlib.Path({str(marker)!r}).write_text("ran run()")
        ''',
    )
    result = plugins_discover()
    assert result.added == ["harmful"]
    assert Plugin.objects.get(pk="harmful").summary == "Looks innocent."
    assert not marker.exists()


@pytest.mark.parametrize("filename", ["Backup Tool.py", "back--up.py", "dé.py", "-x.py"])
def test_it_reports_a_file_whose_name_is_not_a_valid_id_and_registers_nothing(
    write_plugin, filename
):
    write_plugin(filename, BACKUP)
    result = plugins_discover()
    assert result.added == []
    assert Plugin.objects.count() == 0
    (error,) = result.errors
    assert error.path == filename
    assert "not a valid plugin id" in error.message


def test_it_skips_private_and_hidden_files_and_folders(write_plugin):
    write_plugin("_helpers.py", BACKUP)
    write_plugin("__init__.py", "")
    write_plugin(".hidden.py", BACKUP)
    write_plugin("_lib/tool.py", BACKUP)
    write_plugin("notes.txt", "not python")
    result = plugins_discover()
    assert (result.added, result.errors) == ([], [])


def test_it_scans_subfolders_and_reports_a_duplicate_id_keeping_the_shallowest(write_plugin):
    write_plugin("ops/db/backup.py", BACKUP.replace("1.2.0", "3.0"))
    write_plugin("team/backup.py", BACKUP.replace("1.2.0", "2.0"))
    write_plugin("reports/weekly_report.py", BACKUP)
    result = plugins_discover()
    assert result.added == ["backup", "weekly-report"]
    assert Plugin.objects.get(pk="backup").file_path == "team/backup.py"
    assert Plugin.objects.get(pk="weekly-report").file_path == "reports/weekly_report.py"
    (error,) = result.errors
    assert error.path == "ops/db/backup.py"
    assert "duplicate plugin id 'backup'" in error.message and "team/backup.py" in error.message


def test_a_new_duplicate_never_takes_the_id_from_the_registered_file(write_plugin):
    write_plugin("team/backup.py", BACKUP)
    plugins_discover()
    write_plugin("backup.py", BACKUP.replace("1.2.0", "9.9"))
    result = plugins_discover()
    plugin = Plugin.objects.get(pk="backup")
    assert (plugin.file_path, plugin.version) == ("team/backup.py", "1.2.0")
    assert [e.path for e in result.errors] == ["backup.py"]


def test_a_moved_file_keeps_its_plugin_and_updates_the_path(write_plugin, plugins_folder):
    path = write_plugin("backup.py", BACKUP)
    plugins_discover()
    (plugins_folder / "ops").mkdir()
    path.rename(plugins_folder / "ops" / "backup.py")
    result = plugins_discover()
    assert result.updated == ["backup"]
    assert Plugin.objects.get(pk="backup").file_path == "ops/backup.py"
    assert PluginVersion.objects.count() == 1


def test_it_refuses_files_that_are_too_big_or_not_utf8(write_plugin, plugins_folder):
    write_plugin("huge.py", "x = 1\n" * (MAX_PLUGIN_BYTES // 6 + 1) + "def run():\n pass\n")
    (plugins_folder / "latin.py").write_bytes(b'"""Caf\xe9."""\ndef run():\n    pass\n')
    (plugins_folder / "nul.py").write_bytes(b"def run():\n    pass\n\x00")
    result = plugins_discover()
    messages = {e.plugin_id: e.message for e in result.errors}
    assert "larger than" in messages["huge"]
    assert "not UTF-8" in messages["latin"]
    assert "NUL" in messages["nul"]
    assert not Plugin.objects.filter(pk="huge").exists()
    assert PluginVersion.objects.filter(plugin_id__in=["latin", "nul"]).count() == 0


def test_it_clips_metadata_longer_than_the_columns(write_plugin):
    write_plugin(
        "long.py",
        f'"""{"s" * 600}"""\n__version__ = "{"1" * 80}"\n__author__ = "{"a" * 300}"\n'
        "def run():\n    pass\n",
    )
    plugins_discover()
    plugin = Plugin.objects.get(pk="long")
    assert (len(plugin.summary), len(plugin.version), len(plugin.author)) == (500, 50, 200)
    assert plugin.summary.endswith("…")


def test_force_reparses_unchanged_files(write_plugin):
    write_plugin("backup.py", BACKUP)
    plugins_discover()
    Plugin.objects.filter(pk="backup").update(summary="stale", params_schema={})
    assert plugins_discover().unchanged == ["backup"]
    assert Plugin.objects.get(pk="backup").summary == "stale"
    plugins_discover(force=True)
    plugin = Plugin.objects.get(pk="backup")
    assert plugin.summary.startswith("Archive")
    assert plugin.params_schema["required"] == ["source"]


def test_the_summary_names_every_category(write_plugin):
    write_plugin("a.py", BACKUP)
    write_plugin("bad.py", "def run(:\n")
    text = plugins_discover().summary()
    assert "added (2): a, bad" in text
    assert "unchanged (0)" in text
    assert "errors (1):" in text and "bad (bad.py): line 1:" in text


def test_escapes_the_database_cannot_store_never_abort_discovery(write_plugin, plugins_folder):
    write_plugin(
        "odd.py",
        r'''
        """Summary with a NUL \x00 and a lone surrogate \ud800."""
        __author__ = "\ud800 team"

        def run(context, a: int = 1):
            """Args:
                a: the \x00 value"""
        ''',
    )
    write_plugin("odd_schema.py", "def run(x: Literal['\\ud800']):\n    pass\n")
    write_plugin("nul_schema.py", "def run(x: Literal['\\x00']):\n    pass\n")
    write_plugin("slow.py", "TIMEOUT = 1000000000000\ndef run():\n    pass\n")
    write_plugin("fine.py", BACKUP)
    deep = "/".join(["d" * 60] * 17)
    write_plugin(f"{deep}/deep.py", BACKUP)
    result = plugins_discover()
    odd = Plugin.objects.get(pk="odd")
    assert odd.summary == "Summary with a NUL  and a lone surrogate ?."
    assert odd.author == "? team"
    messages = {e.plugin_id or "deep": e.message for e in result.errors}
    assert odd.params_schema["properties"]["a"]["description"] == "the  value"
    assert not odd.discovery_error
    assert "invalid Unicode" in messages["odd-schema"]
    assert "contains a NUL" in messages["nul-schema"]
    assert "at most" in messages["slow"]
    assert messages["deep"] == "path is too long"
    assert Plugin.objects.get(pk="fine").discovery_error == "", "the others are registered"
