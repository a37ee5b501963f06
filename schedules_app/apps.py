from __future__ import annotations

from django.apps import AppConfig


class SchedulesAppConfig(AppConfig):
    name = "schedules_app"
    verbose_name = "Schedules"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Connects the before_task_publish hook that stamps each fire with beat's clock.
        from schedules_app import tasks  # noqa: F401
