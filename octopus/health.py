"""`/healthz`: can this deployment serve a run end to end?

Reports the database, Redis and whether at least one Celery worker has announced itself in
the last few heartbeats (see `octopus/celery.py`). 200 only when all three are ok, else 503.
Costs one query, one PING and one SCAN over the (few) worker keys; no broadcast round-trip.
"""

from __future__ import annotations

import time

import redis
from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from octopus.celery import WORKER_KEY_PREFIX


def _timed(check) -> dict:
    started = time.perf_counter()
    try:
        detail = check()
        ok = True
    except Exception as exc:
        detail = {"error": f"{type(exc).__name__}: {exc}"}
        ok = False
    return {"ok": ok, "ms": round((time.perf_counter() - started) * 1000, 1), **detail}


def _database() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"vendor": connection.vendor}


def _client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)


def _redis() -> dict:
    _client().ping()
    return {"embedded": settings.REDIS_IS_EMBEDDED}


def _workers() -> dict:
    names = sorted(
        key.decode()[len(WORKER_KEY_PREFIX) :]
        for key in _client().scan_iter(match=WORKER_KEY_PREFIX + "*", count=100)
    )
    if not names:
        raise RuntimeError("no Celery worker has reported in the last heartbeats")
    return {"workers": names}


@never_cache
@require_GET
def healthz(request):
    checks = {"database": _timed(_database), "redis": _timed(_redis), "worker": _timed(_workers)}
    healthy = all(check["ok"] for check in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "error", "checks": checks}, status=200 if healthy else 503
    )
