"""plugin_activate / plugin_deactivate / plugin_rollback: superuser-only, audited."""

from __future__ import annotations

import hashlib

import pytest
from django.contrib.admin.models import LogEntry
from django.core.exceptions import PermissionDenied, ValidationError

from plugins_app.models import Plugin, PluginVersion
from plugins_app.services import (
    plugin_activate,
    plugin_deactivate,
    plugin_rollback,
    plugins_discover,
)

pytestmark = pytest.mark.django_db

V1 = '"""Say hello."""\n__version__ = "1"\n\ndef run(context, name: str = "x"):\n    return {}\n'
V2 = V1.replace('"1"', '"2"')


@pytest.fixture
def hello(write_plugin) -> Plugin:
    write_plugin("hello.py", V1)
    plugins_discover()
    return Plugin.objects.get(pk="hello")


def test_a_superuser_activates_and_deactivates_and_each_change_is_logged(hello, admin_user_obj):
    assert plugin_activate(plugin=hello, user=admin_user_obj)
    assert Plugin.objects.get(pk="hello").is_active
    assert not plugin_activate(plugin=hello, user=admin_user_obj), "already active: no-op"
    assert plugin_deactivate(plugin=hello, user=admin_user_obj)
    assert not Plugin.objects.get(pk="hello").is_active
    entries = LogEntry.objects.filter(object_id="hello").order_by("pk")
    assert [e.change_message for e in entries] == ["Activated", "Deactivated"]
    assert {e.user_id for e in entries} == {admin_user_obj.pk}


def test_it_refuses_activation_by_anyone_but_a_superuser(hello, bob, django_user_model):
    staff = django_user_model.objects.create_user("staff", password="x", is_staff=True)
    for user in (bob, staff, None):
        with pytest.raises(PermissionDenied):
            plugin_activate(plugin=hello, user=user)
    assert not Plugin.objects.get(pk="hello").is_active
    assert not LogEntry.objects.exists()


def test_it_refuses_to_activate_a_broken_or_missing_plugin(write_plugin, admin_user_obj):
    write_plugin("broken.py", "def run(:\n")
    path = write_plugin("gone.py", V1)
    plugins_discover()
    path.unlink()
    plugins_discover()
    for pk, message in [("broken", "fix its error"), ("gone", "missing")]:
        with pytest.raises(ValidationError) as info:
            plugin_activate(plugin=Plugin.objects.get(pk=pk), user=admin_user_obj)
        assert message in str(info.value)
    assert not Plugin.objects.filter(is_active=True).exists()


def test_rollback_restores_the_source_and_re_registers_without_a_new_version(
    hello, admin_user_obj, plugins_folder
):
    plugin_activate(plugin=hello, user=admin_user_obj)
    (plugins_folder / "hello.py").write_text(V2)
    plugins_discover()
    first = PluginVersion.objects.get(plugin_id="hello", version="1")
    plugin = plugin_rollback(version=first, user=admin_user_obj)
    assert (plugins_folder / "hello.py").read_text() == V1
    assert plugin.sha256 == first.sha256 == hashlib.sha256(V1.encode()).hexdigest()
    assert plugin.version == "1" and plugin.is_active
    assert PluginVersion.objects.filter(plugin_id="hello").count() == 2
    assert (
        LogEntry.objects.filter(object_id="hello")
        .order_by("pk")
        .last()
        .change_message.startswith("Rolled back to 1")
    )


def test_rollback_brings_back_a_deleted_file(hello, admin_user_obj, plugins_folder):
    (plugins_folder / "hello.py").unlink()
    plugins_discover()
    plugin_rollback(version=hello.versions.get(), user=admin_user_obj)
    assert (plugins_folder / "hello.py").read_text() == V1
    assert not Plugin.objects.get(pk="hello").is_missing


def test_rollback_is_refused_for_a_non_superuser_and_for_the_current_version(
    hello, bob, admin_user_obj, plugins_folder
):
    (plugins_folder / "hello.py").write_text(V2)
    plugins_discover()
    first = PluginVersion.objects.get(plugin_id="hello", version="1")
    with pytest.raises(PermissionDenied):
        plugin_rollback(version=first, user=bob)
    assert (plugins_folder / "hello.py").read_text() == V2
    current = PluginVersion.objects.get(plugin_id="hello", version="2")
    with pytest.raises(ValidationError):
        plugin_rollback(version=current, user=admin_user_obj)
    assert (plugins_folder / "hello.py").read_text() == V2
    assert not LogEntry.objects.exists()


def test_rollback_refuses_a_path_outside_the_plugins_folder(hello, admin_user_obj, tmp_path):
    Plugin.objects.filter(pk="hello").update(file_path="../escape.py", sha256="0" * 64)
    version = hello.versions.get()
    with pytest.raises(ValidationError):
        plugin_rollback(version=version, user=admin_user_obj)
    assert not (tmp_path / "escape.py").exists()
