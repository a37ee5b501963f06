"""Schedules: a plugin + params run on a cron, an interval or once, as its owner.

A Schedule is the truth; its django-celery-beat PeriodicTask (+ Crontab/Interval/Clocked
schedule) is a projection kept in sync by `schedules_app/services.py`, never edited directly.
Beat sends `schedules_app.fire_schedule`; the worker turns that into at most one ScheduleFire
per (schedule, nominal fire time) — the unique constraint is what makes a beat restart, an
edit, or a second beat process by mistake harmless.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone as django_timezone


class Overlap(models.TextChoices):
    SKIP = "skip", "Skip if the previous run is still going"
    ALLOW = "allow", "Allow overlapping runs"


class ScheduleQuerySet(models.QuerySet):
    def visible_to(self, user) -> ScheduleQuerySet:
        """Schedules `user` may see: their own, or all with `tasks_app.view_all_tasks`."""
        if user.is_superuser or user.has_perm("tasks_app.view_all_tasks"):
            return self
        return self.filter(owner=user)


class Schedule(models.Model):
    plugin = models.ForeignKey(
        "plugins_app.Plugin", on_delete=models.PROTECT, related_name="schedules"
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="octopus_schedules",
        help_text="Runs are created as this user.",
    )  # fmt: skip
    params = models.JSONField(default=dict, blank=True)

    # Exactly one of the three (a CheckConstraint below).
    cron = models.CharField(max_length=200, blank=True, help_text="minute hour dom month dow")
    timezone = models.CharField(max_length=64, default="UTC", help_text="IANA name, for cron.")
    interval_seconds = models.PositiveIntegerField(null=True, blank=True)
    run_at = models.DateTimeField(null=True, blank=True, help_text="Run once at this time.")

    enabled = models.BooleanField(default=True)
    overlap = models.CharField(max_length=8, choices=Overlap.choices, default=Overlap.SKIP)
    # Interval ticks are anchor_at + k·interval: fixed, so every beat computes the same
    # nominal time for a fire. Reset when the interval changes.
    anchor_at = models.DateTimeField(default=django_timezone.now)

    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask", on_delete=models.SET_NULL, null=True, blank=True,
        related_name="octopus_schedule", editable=False,
    )  # fmt: skip
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ScheduleQuerySet.as_manager()

    class Meta:
        ordering = ["plugin_id", "id"]
        indexes = [models.Index(fields=["owner", "id"], name="schedule_owner_idx")]
        constraints = [
            models.CheckConstraint(
                condition=(
                    (~Q(cron="") & Q(interval_seconds__isnull=True) & Q(run_at__isnull=True))
                    | (Q(cron="") & Q(interval_seconds__isnull=False) & Q(run_at__isnull=True))
                    | (Q(cron="") & Q(interval_seconds__isnull=True) & Q(run_at__isnull=False))
                ),
                name="schedule_exactly_one_timing",
            ),
            models.CheckConstraint(
                condition=Q(interval_seconds__isnull=True) | Q(interval_seconds__gt=0),
                name="schedule_interval_positive",
            ),
            models.CheckConstraint(
                condition=Q(overlap__in=Overlap.values), name="schedule_overlap_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.plugin_id} #{self.pk} ({self.timing_label})"

    @property
    def kind(self) -> str:
        if self.cron:
            return "cron"
        if self.interval_seconds:
            return "interval"
        return "once"

    @property
    def timing_label(self) -> str:
        if self.cron:
            return f"{self.cron} {self.timezone}"
        if self.interval_seconds:
            return f"every {self.interval_seconds}s"
        return f"once at {self.run_at:%Y-%m-%d %H:%M:%S} UTC" if self.run_at else "?"

    def can_edit(self, user) -> bool:
        """The owner or a superuser may edit, toggle or delete."""
        return user.is_superuser or user.pk == self.owner_id

    @property
    def periodic_task_name(self) -> str:
        return f"octopus-schedule-{self.pk}"

    @property
    def not_firing_reason(self) -> str:
        """Why a fire would create no run right now ("" when it would). No query beyond the
        plugin and owner rows, which callers select_related."""
        plugin = self.plugin
        if plugin.is_missing:
            return "plugin file missing"
        if plugin.discovery_error:
            return "plugin has an error"
        if not plugin.is_active:
            return "plugin inactive"
        if not self.owner.is_active:
            return "owner deactivated"
        return ""


class FireOutcome(models.TextChoices):
    CREATED = "created", "Run created"
    SKIPPED_OVERLAP = "skipped_overlap", "Skipped: previous run still going"
    SKIPPED_PLUGIN = "skipped_plugin", "Skipped: plugin cannot run"
    SKIPPED_PARAMS = "skipped_params", "Skipped: params break the schema"
    SKIPPED_OWNER = "skipped_owner", "Skipped: owner may not run plugins"


class ScheduleFire(models.Model):
    """One nominal fire time of a schedule, claimed once. Insert-if-absent on
    (schedule, nominal_at) is the exactly-once guarantee."""

    schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, related_name="fires")
    nominal_at = models.DateTimeField()
    fired_at = models.DateTimeField(default=django_timezone.now, help_text="When beat sent it.")
    outcome = models.CharField(max_length=20, choices=FireOutcome.choices)
    reason = models.TextField(blank=True)
    task = models.ForeignKey(
        "tasks_app.Task", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["schedule", "-nominal_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["schedule", "nominal_at"], name="schedulefire_once_per_nominal_time"
            ),
            models.CheckConstraint(
                condition=Q(outcome__in=FireOutcome.values), name="schedulefire_outcome_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.schedule_id}@{self.nominal_at:%Y-%m-%d %H:%M:%S} {self.outcome}"

    @property
    def skipped(self) -> bool:
        return self.outcome != FireOutcome.CREATED
