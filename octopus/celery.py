"""The Celery app. Configuration comes from Django settings (`CELERY_*`).

The beat process also runs the reaper (`_reap_forever`): failing runs whose worker died and
queueing again runs whose broker message is gone.

Workers announce themselves in Redis (`octopus:worker:<hostname>`, refreshed every
`WORKER_HEARTBEAT_SECONDS`, expiring after three missed beats) so `/healthz` can tell whether
any worker is alive without a broadcast round-trip.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from celery import Celery
from celery.signals import beat_init, task_postrun, task_prerun, worker_ready, worker_shutdown

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "octopus.settings")

app = Celery("octopus")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

logger = logging.getLogger(__name__)
WORKER_KEY_PREFIX = "octopus:worker:"


@task_prerun.connect
@task_postrun.connect
def _recycle_database_connections(**kwargs) -> None:
    """Around each task, what Django does around each request: drop a connection that is
    broken, in a transaction left open, or older than CONN_MAX_AGE; keep a good one (with
    CONN_HEALTH_CHECKS, its first use in the next task checks it is still alive)."""
    from django.db import connections

    for conn in connections.all(initialized_only=True):
        conn.close_if_unusable_or_obsolete()


_stop_heartbeat = threading.Event()


def _redis():
    import redis
    from django.conf import settings

    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)


def _beat(hostname: str) -> None:
    from django.conf import settings

    interval = settings.WORKER_HEARTBEAT_SECONDS
    client = _redis()
    while not _stop_heartbeat.is_set():
        try:
            client.set(WORKER_KEY_PREFIX + hostname, "1", ex=interval * 3)
        except Exception:  # Redis down: /healthz reports it; keep trying.
            pass
        _stop_heartbeat.wait(interval)


@worker_ready.connect
def _start_heartbeat(sender=None, **kwargs) -> None:
    hostname = getattr(sender, "hostname", None) or "worker"
    threading.Thread(target=_beat, args=(hostname,), name="octopus-heartbeat", daemon=True).start()


@worker_shutdown.connect
def _stop_heartbeat_on_shutdown(sender=None, **kwargs) -> None:
    _stop_heartbeat.set()
    hostname = getattr(sender, "hostname", None) or "worker"
    try:
        _redis().delete(WORKER_KEY_PREFIX + hostname)
    except Exception:
        pass


def _reap_forever() -> None:
    """The reaper, in the beat process, at start and every TASK_REAP_INTERVAL_SECONDS. Not a
    Celery task: it looks for runs whose worker died, and must work when no worker is alive
    to take a message (one worker, SIGKILLed)."""
    from django.conf import settings

    from tasks_app.services import tasks_reap_pass

    interval = settings.TASK_REAP_INTERVAL_SECONDS
    while True:
        try:
            tasks_reap_pass()
        except Exception:  # database or Redis down: say so, try again next time
            logger.exception("reaper pass failed; next one in %ss", interval)
        finally:
            _recycle_database_connections()
        time.sleep(interval)


@beat_init.connect
def _start_reaper(sender=None, **kwargs) -> None:
    threading.Thread(target=_reap_forever, name="octopus-reaper", daemon=True).start()
