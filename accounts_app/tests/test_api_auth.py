from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from accounts_app.models import ApiToken, hash_token
from tasks_app.tests._api_support import make_plugin, make_task

pytestmark = pytest.mark.django_db


def _token_for(username: str) -> str:
    from io import StringIO

    out = StringIO()
    call_command("create_api_token", username, stdout=out)
    return out.getvalue().strip()


def test_create_api_token_prints_a_token_that_is_stored_only_as_its_hash(alice):
    raw = _token_for("alice")
    assert raw.startswith("oct_") and len(raw) > 40
    token = ApiToken.objects.get(user=alice)
    assert token.token_hash == hash_token(raw)
    assert raw not in (token.token_hash, token.prefix)
    assert ApiToken.objects.filter(token_hash=raw).count() == 0


def test_create_api_token_rejects_an_unknown_user_and_creates_nothing(db):
    with pytest.raises(CommandError, match="no user named 'nobody'"):
        call_command("create_api_token", "nobody")
    assert ApiToken.objects.count() == 0


def test_create_api_token_rejects_an_inactive_user(alice):
    alice.is_active = False
    alice.save()
    with pytest.raises(CommandError, match="inactive"):
        call_command("create_api_token", "alice")
    assert ApiToken.objects.count() == 0


def test_a_bearer_token_authenticates_api_calls(alice):
    raw = _token_for("alice")
    task = make_task(make_plugin(), alice)
    response = Client().get("/api/v1/tasks", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 200
    assert [item["id"] for item in response.json()["items"]] == [str(task.id)]
    assert ApiToken.objects.get().last_used_at is not None


def test_a_bearer_token_may_post_without_csrf(admin_user_obj):
    raw = _token_for("root")
    make_plugin(is_active=False)
    client = Client(enforce_csrf_checks=True)
    response = client.post("/api/v1/plugins/hello/activate", HTTP_AUTHORIZATION=f"Bearer {raw}")
    # The plugin services decide; what matters here is that auth and CSRF let it through.
    assert response.status_code not in (401, 403)


def test_a_wrong_token_is_refused_even_with_a_session(alice):
    client = Client()
    client.force_login(alice)
    response = client.get("/api/v1/tasks", HTTP_AUTHORIZATION="Bearer oct_not-a-real-token")
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid or revoked API token."}


def test_a_revoked_token_is_refused(alice):
    raw = _token_for("alice")
    token = ApiToken.objects.get()
    assert token.revoke() is True
    assert token.revoke() is False
    response = Client().get("/api/v1/tasks", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 401


def test_a_token_of_a_deactivated_user_is_refused(alice):
    raw = _token_for("alice")
    alice.is_active = False
    alice.save()
    response = Client().get("/api/v1/tasks", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 401


def test_a_non_bearer_authorization_header_is_refused_clearly(alice):
    response = Client().get("/api/v1/tasks", HTTP_AUTHORIZATION="Basic YWxpY2U6eA==")
    assert response.status_code == 401
    assert "Bearer" in response.json()["detail"]


def test_anonymous_calls_get_401_with_a_readable_message(db):
    for path in ("/api/v1/plugins", "/api/v1/tasks"):
        response = Client().get(path)
        assert response.status_code == 401
        assert "Authorization: Bearer" in response.json()["detail"]


def test_a_session_post_without_csrf_is_refused_with_403_and_changes_nothing(alice):
    from tasks_app.models import Task

    make_plugin()
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    response = client.post(
        "/api/v1/tasks",
        {"plugin": "hello", "params": {"name": "x"}},
        content_type="application/json",
    )
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
    assert Task.objects.count() == 0


def test_a_session_get_needs_no_csrf(alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    assert client.get("/api/v1/tasks").status_code == 200


def test_the_admin_revoke_action_revokes_selected_tokens(admin_user_obj, alice):
    _token_for("alice")
    client = Client()
    client.force_login(admin_user_obj)
    token = ApiToken.objects.get()
    page = client.get(f"/admin/accounts_app/apitoken/{token.pk}/change/")
    assert page.status_code == 200
    assert token.token_hash not in page.content.decode()
    response = client.post(
        "/admin/accounts_app/apitoken/",
        {"action": "revoke_tokens", "_selected_action": [token.pk]},
    )
    assert response.status_code == 302
    token.refresh_from_db()
    assert token.is_revoked
