from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def test_it_creates_admin_with_the_given_password(monkeypatch):
    monkeypatch.setenv("OCTOPUS_ADMIN_PASSWORD", "s3cret-pass-!")
    out = StringIO()
    call_command("ensure_admin", stdout=out)
    user = get_user_model().objects.get(username="admin")
    assert user.is_superuser and user.check_password("s3cret-pass-!")
    assert "s3cret-pass-!" not in out.getvalue()


def test_it_generates_prints_and_keeps_a_password_once(monkeypatch, settings, tmp_path):
    monkeypatch.delenv("OCTOPUS_ADMIN_PASSWORD", raising=False)
    settings.VAR_DIR = tmp_path
    out = StringIO()
    call_command("ensure_admin", stdout=out)
    kept = (tmp_path / "admin_password").read_text().strip()
    assert kept in out.getvalue()
    assert get_user_model().objects.get(username="admin").check_password(kept)
    again = StringIO()
    call_command("ensure_admin", stdout=again)
    assert kept not in again.getvalue()
    assert "exists" in again.getvalue()
