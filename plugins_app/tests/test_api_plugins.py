from __future__ import annotations

import pytest
from django.test import Client

from plugins_app.models import Plugin
from tasks_app.tests._api_support import make_plugin

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(alice):
    client = Client()
    client.force_login(alice)
    return client


@pytest.fixture
def root_api(admin_user_obj):
    client = Client()
    client.force_login(admin_user_obj)
    return client


def test_the_plugin_list_has_the_documented_shape(api):
    make_plugin("backup-tool", author="Ops team", version="1.2.0")
    body = api.get("/api/v1/plugins").json()
    assert body["total"] == 1
    item = body["items"][0]
    for key in ("id", "name", "summary", "description", "version", "author", "is_active",
                "sha256", "md5", "schema", "takes_context", "error"):  # fmt: skip
        assert key in item
    assert item["id"] == "backup-tool"
    assert item["schema"]["required"] == ["name"]
    assert item["author"] == "Ops team"


def test_the_plugin_list_filters_by_text_activity_and_author(api):
    make_plugin("backup-tool", author="Ops team", summary="Archive a directory")
    make_plugin("cleaner", author="Data", is_active=False)
    make_plugin("mailer", author="ops TEAM")
    ids = lambda r: [i["id"] for i in r.json()["items"]]  # noqa: E731
    assert ids(api.get("/api/v1/plugins", {"q": "archive"})) == ["backup-tool"]
    assert ids(api.get("/api/v1/plugins", {"active": "false"})) == ["cleaner"]
    assert ids(api.get("/api/v1/plugins", {"active": "true"})) == ["backup-tool", "mailer"]
    assert ids(api.get("/api/v1/plugins", {"author": "ops team"})) == ["backup-tool", "mailer"]
    page = api.get("/api/v1/plugins", {"limit": 1, "offset": 1}).json()
    assert page["total"] == 3
    assert [i["id"] for i in page["items"]] == ["cleaner"]


def test_the_plugin_list_rejects_bad_query_values_readably(api):
    response = api.get("/api/v1/plugins", {"active": "maybe", "limit": 0})
    assert response.status_code == 422
    errors = response.json()["errors"]
    assert set(errors) == {"active", "limit"}


def test_a_broken_plugin_is_listed_with_its_error(api):
    make_plugin("broken", is_active=False, discovery_error="SyntaxError: invalid syntax (line 3)")
    item = api.get("/api/v1/plugins/broken").json()
    assert item["error"].startswith("SyntaxError")
    assert item["runnable"] is False


def test_an_unknown_plugin_is_404(api):
    response = api.get("/api/v1/plugins/nope")
    assert response.status_code == 404
    assert response.json() == {"detail": "No plugin 'nope'."}


@pytest.mark.parametrize("action", ["activate", "deactivate"])
def test_only_a_superuser_may_activate_or_deactivate(api, action):
    make_plugin("hello", is_active=action == "deactivate")
    response = api.post(f"/api/v1/plugins/hello/{action}")
    assert response.status_code == 403
    assert "superuser" in response.json()["detail"]
    assert Plugin.objects.get().is_active is (action == "deactivate")


def test_only_a_superuser_may_discover(api):
    response = api.post("/api/v1/plugins/discover")
    assert response.status_code == 403


def test_activating_an_unknown_plugin_is_404(root_api):
    assert root_api.post("/api/v1/plugins/nope/activate").status_code == 404


def test_a_superuser_activates_and_deactivates_a_plugin_with_an_audit_entry(root_api):
    from django.contrib.admin.models import LogEntry

    make_plugin("hello", is_active=False)
    response = root_api.post("/api/v1/plugins/hello/activate")
    assert response.status_code == 200
    assert response.json()["is_active"] is True
    assert Plugin.objects.get().is_active
    response = root_api.post("/api/v1/plugins/hello/deactivate")
    assert response.json()["is_active"] is False
    assert LogEntry.objects.filter(object_id="hello").count() == 2


def test_activating_a_broken_plugin_is_409_and_changes_nothing(root_api):
    make_plugin("broken", is_active=False, discovery_error="SyntaxError: invalid syntax")
    response = root_api.post("/api/v1/plugins/broken/activate")
    assert response.status_code == 409
    assert "fix its error first" in response.json()["detail"]
    assert Plugin.objects.get().is_active is False


def test_a_superuser_discovers_plugins_from_the_folder(root_api, settings, tmp_path):
    settings.PLUGINS_FOLDER = tmp_path
    (tmp_path / "say_hi.py").write_text(
        '"""Say hi."""\n\ndef run(context, name: str = "x"):\n    pass\n'
    )
    response = root_api.post("/api/v1/plugins/discover")
    assert response.status_code == 200
    body = response.json()
    assert body["report"]["added"] == ["say-hi"]
    assert body["total"] == 1
    assert Plugin.objects.get().summary == "Say hi."
