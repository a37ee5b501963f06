from __future__ import annotations

import pytest
from django.test import override_settings

pytestmark = pytest.mark.django_db


def test_it_is_healthy_with_database_redis_and_a_live_worker(client, celery_worker_process):
    response = client.get("/healthz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["redis"]["ok"] is True
    assert celery_worker_process.hostname in body["checks"]["worker"]["workers"]


def test_it_reports_redis_down_with_503(client):
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
        response = client.get("/healthz")
    body = response.json()
    assert response.status_code == 503
    assert body["status"] == "error"
    assert body["checks"]["redis"]["ok"] is False
    assert "Connection" in body["checks"]["redis"]["error"]
    assert body["checks"]["database"]["ok"] is True


def test_it_reports_no_worker_with_503(client, redis_client):
    from octopus.celery import WORKER_KEY_PREFIX

    if list(redis_client.scan_iter(match=WORKER_KEY_PREFIX + "*")):
        pytest.skip("a worker from outside this test is alive on this Redis")
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["worker"]["ok"] is False


def test_it_answers_without_login(client):
    assert client.get("/healthz").status_code in (200, 503)
    assert client.post("/healthz").status_code == 405
