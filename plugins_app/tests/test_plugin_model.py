from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from plugins_app.models import Plugin, PluginVersion

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("bad_id", ["Backup", "back_up", "-x", "x-", "a--b", ""])
def test_it_refuses_an_id_that_is_not_lowercase_and_hyphens(bad_id):
    with pytest.raises(IntegrityError), transaction.atomic():
        Plugin.objects.create(id=bad_id, name="x", file_path="x.py")


def test_a_plugin_keeps_one_version_per_hash():
    plugin = Plugin.objects.create(id="backup-tool", name="Backup", file_path="backup_tool.py")
    PluginVersion.objects.create(plugin=plugin, sha256="a" * 64, md5="b" * 32, source="x")
    with pytest.raises(IntegrityError), transaction.atomic():
        PluginVersion.objects.create(plugin=plugin, sha256="a" * 64, md5="b" * 32, source="y")


def test_only_an_active_present_error_free_plugin_is_runnable():
    plugin = Plugin(id="p", name="p", file_path="p.py", is_active=True)
    assert plugin.is_runnable
    plugin.is_missing = True
    assert not plugin.is_runnable
    plugin.is_missing, plugin.discovery_error = False, "line 3: invalid syntax"
    assert not plugin.is_runnable
