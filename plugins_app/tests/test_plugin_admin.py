"""The plugin admin through the test client: list, filters, actions, rediscover, rollback."""

from __future__ import annotations

import html

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.urls import reverse

from plugins_app.models import Plugin, PluginVersion
from plugins_app.services import plugins_discover

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:plugins_app_plugin_changelist")
SOURCE = (
    '"""{summary}"""\n__version__ = "{version}"\n__author__ = "{author}"\n\n'
    "def run(context, n: int = 1):\n    pass\n"
)


def source(summary="Does things.", version="1", author="Ops"):
    return SOURCE.format(summary=summary, version=version, author=author)


@pytest.fixture
def registered(write_plugin):
    write_plugin("alpha.py", source("Alpha summary.", author="Ops"))
    write_plugin("beta.py", source("Beta summary.", author="Data"))
    write_plugin("broken.py", "def run(:\n")
    plugins_discover()


@pytest.fixture
def superuser_client(client, admin_user_obj):
    client.force_login(admin_user_obj)
    return client


@pytest.fixture
def staff_client(client, django_user_model):
    """Staff who may view and change plugins in the admin, but is not a superuser."""
    user = django_user_model.objects.create_user("staff", password="x", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_plugin", "change_plugin"])
    )
    client.force_login(user)
    return client


def _action(client, action, ids):
    return client.post(
        CHANGELIST, {"action": action, "_selected_action": ids, "index": 0}, follow=True
    )


def test_the_list_shows_version_author_and_error_flag(registered, superuser_client):
    response = superuser_client.get(CHANGELIST)
    body = response.content.decode()
    assert response.status_code == 200
    assert "alpha" in body and "Ops" in body and "broken" in body
    assert "Rediscover plugin files" in body


def test_it_searches_names_descriptions_and_authors(registered, superuser_client):
    response = superuser_client.get(CHANGELIST, {"q": "Data"})
    assert [p.pk for p in response.context["cl"].result_list] == ["beta"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"has_error": "yes"}, ["broken"]),
        ({"has_error": "no"}, ["alpha", "beta"]),
        ({"author": "Ops"}, ["alpha"]),
        ({"is_active__exact": "0"}, ["alpha", "beta", "broken"]),
    ],
)
def test_it_filters_by_error_author_and_active(registered, superuser_client, query, expected):
    response = superuser_client.get(CHANGELIST, query)
    assert [p.pk for p in response.context["cl"].result_list] == expected


def test_a_superuser_bulk_activates_and_each_is_in_the_admin_log(registered, superuser_client):
    response = _action(superuser_client, "activate_selected", ["alpha", "beta", "broken"])
    assert response.status_code == 200
    assert set(Plugin.objects.filter(is_active=True).values_list("pk", flat=True)) == {
        "alpha",
        "beta",
    }
    body = response.content.decode()
    assert "Activated: alpha, beta." in body and "fix its error first" in body
    assert set(LogEntry.objects.values_list("object_id", "change_message")) == {
        ("alpha", "Activated"),
        ("beta", "Activated"),
    }
    _action(superuser_client, "deactivate_selected", ["alpha"])
    assert not Plugin.objects.get(pk="alpha").is_active
    assert LogEntry.objects.filter(object_id="alpha", change_message="Deactivated").exists()


def test_staff_who_is_not_a_superuser_cannot_activate(registered, staff_client):
    response = staff_client.get(CHANGELIST)
    assert response.status_code == 200
    assert "activate_selected" not in response.content.decode()
    response = _action(staff_client, "activate_selected", ["alpha"])
    assert response.status_code == 200
    assert not Plugin.objects.filter(is_active=True).exists()
    assert not LogEntry.objects.exists()


def test_the_rediscover_button_registers_new_files(registered, superuser_client, write_plugin):
    write_plugin("gamma.py", source("Gamma."))
    response = superuser_client.post(reverse("admin:plugins_app_plugin_rediscover"), follow=True)
    assert response.status_code == 200
    assert "added (1): gamma" in html.unescape(response.content.decode())
    assert Plugin.objects.filter(pk="gamma").exists()


def test_rediscover_refuses_get_and_non_superusers(registered, staff_client, write_plugin):
    write_plugin("gamma.py", source("Gamma."))
    url = reverse("admin:plugins_app_plugin_rediscover")
    assert staff_client.post(url).status_code == 403
    assert staff_client.get(url).status_code == 405
    assert not Plugin.objects.filter(pk="gamma").exists()


def test_the_rediscover_action_runs_discovery(registered, superuser_client, write_plugin):
    write_plugin("gamma.py", source("Gamma."))
    _action(superuser_client, "rediscover", ["alpha"])
    assert Plugin.objects.filter(pk="gamma").exists()


def test_the_change_page_shows_schema_functions_and_versions_read_only(
    registered, superuser_client, plugins_folder
):
    (plugins_folder / "alpha.py").write_text(source("Alpha summary.", version="2"))
    plugins_discover()
    response = superuser_client.get(reverse("admin:plugins_app_plugin_change", args=["alpha"]))
    body = response.content.decode()
    assert response.status_code == 200
    assert "&quot;type&quot;: &quot;integer&quot;" in body  # the schema, escaped in a <pre>
    assert "&quot;name&quot;: &quot;run&quot;" in body
    old = PluginVersion.objects.get(plugin_id="alpha", version="1")
    assert reverse("admin:plugins_app_plugin_rollback", args=["alpha", old.pk]) in body
    assert 'name="_save"' not in body


def test_rollback_asks_for_confirmation_then_restores_the_file(
    registered, superuser_client, plugins_folder
):
    (plugins_folder / "alpha.py").write_text(source("Alpha summary.", version="2"))
    plugins_discover()
    old = PluginVersion.objects.get(plugin_id="alpha", version="1")
    url = reverse("admin:plugins_app_plugin_rollback", args=["alpha", old.pk])
    page = superuser_client.get(url)
    assert page.status_code == 200
    diff = html.unescape(page.content.decode())
    assert '-__version__ = "2"' in diff
    assert '+__version__ = "1"' in diff
    assert Plugin.objects.get(pk="alpha").version == "2", "GET changes nothing"
    response = superuser_client.post(url, follow=True)
    assert response.status_code == 200
    assert f"Rolled alpha back to version 1 ({old.sha256[:12]})." in response.content.decode()
    assert Plugin.objects.get(pk="alpha").version == "1"
    assert '__version__ = "1"' in (plugins_folder / "alpha.py").read_text()


def test_rollback_is_forbidden_to_staff_who_are_not_superusers(
    registered, staff_client, plugins_folder
):
    (plugins_folder / "alpha.py").write_text(source(version="2"))
    plugins_discover()
    old = PluginVersion.objects.get(plugin_id="alpha", version="1")
    url = reverse("admin:plugins_app_plugin_rollback", args=["alpha", old.pk])
    assert staff_client.get(url).status_code == 403
    assert staff_client.post(url).status_code == 403
    assert '__version__ = "2"' in (plugins_folder / "alpha.py").read_text()


def test_rollback_of_a_version_of_another_plugin_is_not_found(registered, superuser_client):
    beta_version = PluginVersion.objects.get(plugin_id="beta")
    url = reverse("admin:plugins_app_plugin_rollback", args=["alpha", beta_version.pk])
    assert superuser_client.get(url).status_code == 404


def test_nobody_can_add_or_delete_plugins_in_the_admin(registered, superuser_client):
    assert superuser_client.get(reverse("admin:plugins_app_plugin_add")).status_code == 403
    url = reverse("admin:plugins_app_plugin_delete", args=["alpha"])
    assert superuser_client.post(url, {"post": "yes"}).status_code == 403
    assert Plugin.objects.filter(pk="alpha").exists()


def test_the_confirmation_warns_when_the_version_is_broken(
    registered, superuser_client, plugins_folder
):
    (plugins_folder / "broken.py").write_text(source("Fixed now."))
    plugins_discover()
    broken_version = PluginVersion.objects.get(plugin_id="broken", version="")
    url = reverse("admin:plugins_app_plugin_rollback", args=["broken", broken_version.pk])
    body = superuser_client.get(url).content.decode()
    assert "does not register as a working plugin: line 1:" in body
    fixed = PluginVersion.objects.get(plugin_id="broken", version="1")
    assert Plugin.objects.get(pk="broken").sha256 == fixed.sha256, "GET changes nothing"
