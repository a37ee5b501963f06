from __future__ import annotations

import re

import pytest
from django.test import Client

from plugins_app.forms import PluginRunForm
from plugins_app.models import Plugin
from plugins_app.services import plugins_discover
from tasks_app.models import Task, TaskStatus

pytestmark = pytest.mark.django_db

SCHEMA = {
    "type": "object",
    "properties": {
        "source": {"type": "string", "description": "the directory to archive"},
        "keep": {"type": "integer", "default": 5, "minimum": 1},
        "ratio": {"type": "number", "default": 0.5},
        "verbose": {"type": "boolean", "default": False},
        "mode": {"type": "string", "enum": ["fast", "best"], "default": "fast"},
        "hosts": {"type": "array", "items": {"type": "string"}},
        "ports": {"type": "array", "items": {"type": "integer"}},
        "extra": {"type": "object"},
    },
    "required": ["source"],
    "additionalProperties": False,
}


@pytest.fixture
def plugin():
    return Plugin.objects.create(
        id="backup-tool",
        name="Backup tool",
        summary="Archive a directory.",
        version="1.2.0",
        author="Ops team",
        file_path="backup_tool.py",
        sha256="a" * 64,
        md5="b" * 32,
        params_schema=SCHEMA,
        is_active=True,
    )


def field_errors(html: str, name: str) -> list[str]:
    block = re.search(rf'id="field-param-{name}".*?</div>', html, re.S)
    assert block, f"no field {name}"
    return re.findall(r'class="error field-error"[^>]*>([^<]*)<', block.group(0))


def test_the_plugin_list_shows_plugins_and_filters_them(client, alice, plugin):
    Plugin.objects.create(
        id="http-check",
        name="HTTP check",
        file_path="http_check.py",
        author="Web team",
        is_active=False,
    )
    client.force_login(alice)
    page = client.get("/plugins/").content.decode()
    assert "Backup tool" in page and "HTTP check" in page
    assert "Backup tool" not in client.get("/plugins/?q=http").content.decode()
    active = client.get("/plugins/?active=1").content.decode()
    assert "Backup tool" in active and "HTTP check" not in active
    by_author = client.get("/plugins/?author=Web+team").content.decode()
    assert "HTTP check" in by_author and "Backup tool" not in by_author


def test_live_search_gets_only_the_rows(client, alice, plugin):
    client.force_login(alice)
    html = client.get("/plugins/?q=backup", headers={"HX-Request": "true"}).content.decode()
    assert html.lstrip().startswith('<div id="plugin-rows"')
    assert "Backup tool" in html and "<html" not in html


def test_the_plugin_page_shows_metadata_and_the_generated_form(client, alice, plugin):
    client.force_login(alice)
    html = client.get("/plugins/backup-tool/").content.decode()
    for text in ("Archive a directory.", "1.2.0", "Ops team", "a" * 64):
        assert text in html
    assert re.search(r'<input type="text" name="param-source"[^>]*required', html)
    assert re.search(r'<input type="number" name="param-keep" value="5"', html)
    assert re.search(r'<input type="number" name="param-ratio" value="0.5" step="any"', html)
    assert re.search(r'<input type="checkbox" name="param-verbose"', html)
    assert re.search(r'<select name="param-mode"', html)
    assert '<option value="&quot;fast&quot;" selected>fast</option>' in html
    assert re.search(r'<textarea name="param-hosts"', html)
    assert "the directory to archive" in html  # description → help text


def test_unknown_plugins_are_404(client, alice):
    client.force_login(alice)
    assert client.get("/plugins/nope/").status_code == 404


def test_submitting_the_form_starts_a_task_and_goes_to_its_page(client, alice, plugin):
    client.force_login(alice)
    response = client.post(
        "/plugins/backup-tool/",
        {
            "param-source": "/srv/data",
            "param-keep": "3",
            "param-ratio": "0.25",
            "param-verbose": "on",
            "param-mode": '"best"',
            "param-hosts": "a.example\nb.example\n",
            "param-ports": "80\n443",
            "param-extra": '{"x": 1}',
        },
    )
    task = Task.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/tasks/{task.pk}/"
    assert task.status == TaskStatus.PENDING and task.user == alice
    assert task.params == {
        "source": "/srv/data",
        "keep": 3,
        "ratio": 0.25,
        "verbose": True,
        "mode": "best",
        "hosts": ["a.example", "b.example"],
        "ports": [80, 443],
        "extra": {"x": 1},
    }


def test_empty_optional_inputs_leave_the_plugin_defaults(client, alice, plugin):
    client.force_login(alice)
    client.post(
        "/plugins/backup-tool/", {"param-source": "/srv", "param-keep": "", "param-mode": '"fast"'}
    )
    assert Task.objects.get().params == {
        "source": "/srv",
        "keep": 5,
        "ratio": 0.5,
        "verbose": False,
        "mode": "fast",
    }


def test_a_value_the_schema_refuses_is_shown_next_to_its_field_and_input_is_kept(
    client, alice, plugin
):
    client.force_login(alice)
    response = client.post(
        "/plugins/backup-tool/", {"param-source": "/srv/keep-me", "param-keep": "0"}
    )
    html = response.content.decode()
    assert response.status_code == 422
    assert field_errors(html, "keep") == ["0 is less than the minimum of 1"]
    assert 'value="/srv/keep-me"' in html and 'name="param-keep" value="0"' in html
    assert not Task.objects.exists()


def test_text_in_a_number_field_is_refused_by_the_form(client, alice, plugin):
    client.force_login(alice)
    response = client.post(
        "/plugins/backup-tool/",
        {"param-source": "/srv", "param-keep": "x", "param-ports": "80\nhttp"},
    )
    html = response.content.decode()
    assert response.status_code == 422
    assert field_errors(html, "keep") == ["Enter a whole number."]
    assert field_errors(html, "ports") == ["Line 2: &#x27;http&#x27; is not a whole number."]
    assert not Task.objects.exists()


def test_a_missing_required_value_and_bad_json_are_refused(client, alice, plugin):
    client.force_login(alice)
    response = client.post("/plugins/backup-tool/", {"param-extra": "{nope"})
    html = response.content.decode()
    assert response.status_code == 422
    assert field_errors(html, "source") == ["This field is required."]
    assert field_errors(html, "extra")[0].startswith("Enter valid JSON")
    assert not Task.objects.exists()


def test_an_inactive_plugin_cannot_be_started(client, alice, plugin):
    plugin.is_active = False
    plugin.save()
    client.force_login(alice)
    page = client.get("/plugins/backup-tool/").content.decode()
    assert "not active" in page and 'name="param-source"' not in page
    response = client.post("/plugins/backup-tool/", {"param-source": "/srv"})
    assert response.status_code == 422
    assert "Not started: the plugin backup-tool is not active." in response.content.decode()
    assert not Task.objects.exists()


def test_a_user_without_the_run_permission_sees_no_form_and_cannot_post(client, charlie, plugin):
    client.force_login(charlie)
    assert 'name="param-source"' not in client.get("/plugins/backup-tool/").content.decode()
    assert client.post("/plugins/backup-tool/", {"param-source": "/srv"}).status_code == 403
    assert not Task.objects.exists()


def test_posting_the_form_without_csrf_is_refused(alice, plugin):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(alice)
    assert strict.post("/plugins/backup-tool/", {"param-source": "/srv"}).status_code == 403
    assert not Task.objects.exists()


def test_anonymous_users_are_sent_to_log_in(client, plugin):
    assert client.get("/plugins/").status_code == 302
    assert client.get("/plugins/backup-tool/")["Location"].startswith("/login/")


def test_the_page_lists_version_history_and_only_the_users_own_runs(
    client, alice, bob, plugin, write_plugin
):
    write_plugin(
        "backup_tool.py", '"""Back up."""\n__version__ = "2.0"\ndef run(source: str): ...\n'
    )
    plugins_discover()
    plugin.refresh_from_db()
    mine = Task.objects.create(plugin=plugin, user=alice)
    theirs = Task.objects.create(plugin=plugin, user=bob)
    client.force_login(alice)
    html = client.get("/plugins/backup-tool/").content.decode()
    assert "2.0" in html and plugin.versions.get().sha256[:16] in html
    assert f"/tasks/{mine.pk}/" in html and f"/tasks/{theirs.pk}/" not in html


def test_an_enum_of_numbers_and_a_list_of_choices_keep_their_json_types():
    form = PluginRunForm(
        {
            "properties": {
                "level": {"enum": [1, 2, None]},
                "tags": {"type": "array", "items": {"enum": ["a", "b"]}},
            },
            "required": ["level"],
        },
        data={"param-level": "2", "param-tags": ['"b"']},
    )
    assert form.is_valid(), form.errors
    assert form.params() == {"level": 2, "tags": ["b"]}
