"""The Celery task beat sends for every schedule: takes an id, calls `schedule_fire`.

The nominal fire time must come from when beat *sent* the fire, not when a worker got to
it — a busy worker may pick it up several intervals later. So the publishing side (the beat
process) stamps the message with its clock in a header, and the task reads it back.
"""

from __future__ import annotations

from datetime import datetime

from celery import shared_task
from celery.signals import before_task_publish
from django.utils import timezone

from schedules_app import services

FIRED_AT_HEADER = "octopus_fired_at"


@before_task_publish.connect
def _stamp_fired_at(sender=None, headers=None, **kwargs) -> None:
    # Runs in the process that publishes (beat). `headers` is the message's own, mutable.
    if sender == services.FIRE_TASK_NAME and headers is not None:
        headers.setdefault(FIRED_AT_HEADER, timezone.now().isoformat())


@shared_task(name=services.FIRE_TASK_NAME, bind=True, ignore_result=True, acks_late=True)
def fire_schedule(self, schedule_id: int) -> str:
    """Fire schedule `schedule_id`; returns the outcome ("ignored" for a duplicate). Safe to
    redeliver: a second delivery finds its nominal time already claimed."""
    stamped = getattr(self.request, FIRED_AT_HEADER, None) or (
        (self.request.headers or {}).get(FIRED_AT_HEADER)
    )
    fired_at = datetime.fromisoformat(stamped) if stamped else timezone.now()
    fire = services.schedule_fire(schedule_id=schedule_id, now=fired_at)
    return fire.outcome if fire else "ignored"
