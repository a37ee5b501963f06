from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_the_dashboard_sends_anonymous_users_to_the_login_page(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_the_login_page_logs_a_user_in(client, alice):
    page = client.get("/login/")
    assert page.status_code == 200
    assert b"Log in to Octopus" in page.content
    response = client.post("/login/", {"username": "alice", "password": "alice-pass-123"})
    assert response.status_code == 302
    dashboard = client.get("/")
    assert dashboard.status_code == 200
    assert b"alice" in dashboard.content


def test_the_login_page_rejects_a_wrong_password(client, alice):
    response = client.post("/login/", {"username": "alice", "password": "wrong"})
    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content
    assert "_auth_user_id" not in client.session


def test_the_base_page_carries_htmx_and_the_csrf_header(client, alice):
    client.force_login(alice)
    html = client.get("/").content.decode()
    assert "/static/django_htmx/htmx-2.min.js" in html
    assert 'hx-headers=\'{"X-CSRFToken": "' in html


def test_logging_in_without_csrf_is_refused(alice):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    response = strict.post("/login/", {"username": "alice", "password": "alice-pass-123"})
    assert response.status_code == 403


def test_the_admin_works_for_a_superuser(client, admin_user_obj):
    client.force_login(admin_user_obj)
    assert client.get("/admin/").status_code == 200
    assert client.get("/admin/plugins_app/plugin/").status_code == 200
    assert client.get("/admin/tasks_app/task/").status_code == 200
    assert client.get("/admin/tasks_app/tasklog/").status_code == 200
