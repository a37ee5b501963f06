"""Schedules in the admin: browse, see every fire and why it was skipped, enable/disable in
bulk. Creating and editing happen on the schedule pages or the API, which validate against
the plugin's schema and keep beat's PeriodicTask in step (django-celery-beat's own admin
shows those rows too; edit the Schedule, not them)."""

from __future__ import annotations

from django.contrib import admin, messages

from schedules_app.models import Schedule, ScheduleFire
from schedules_app.services import schedule_update


class ScheduleFireInline(admin.TabularInline):
    model = ScheduleFire
    fields = ("nominal_at", "fired_at", "outcome", "reason", "task")
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    ordering = ("-nominal_at",)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("task")


@admin.register(Schedule)
class ScheduleAdmin(admin.ModelAdmin):
    list_display = ("id", "plugin", "timing_label", "owner", "enabled", "overlap", "updated_at")
    list_filter = ("enabled", "overlap", "plugin")
    search_fields = ("plugin__id", "cron", "owner__username")
    list_select_related = ("plugin", "owner")
    readonly_fields = (
        "plugin", "owner", "params", "cron", "timezone", "interval_seconds", "run_at",
        "enabled", "overlap", "anchor_at", "periodic_task", "created_at", "updated_at",
        "not_firing_reason",
    )  # fmt: skip
    inlines = [ScheduleFireInline]
    actions = ["enable_schedules", "disable_schedules"]

    def has_add_permission(self, request) -> bool:
        return False  # through the pages/API, which validate params against the schema

    @admin.action(description="Enable selected schedules", permissions=["change"])
    def enable_schedules(self, request, queryset):
        self._set_enabled(request, queryset, True)

    @admin.action(description="Disable selected schedules", permissions=["change"])
    def disable_schedules(self, request, queryset):
        self._set_enabled(request, queryset, False)

    def _set_enabled(self, request, queryset, enabled: bool) -> None:
        changed = 0
        for schedule in queryset.select_related("plugin"):
            if schedule.enabled != enabled:
                schedule_update(schedule=schedule, enabled=enabled)
                changed += 1
        word = "Enabled" if enabled else "Disabled"
        self.message_user(request, f"{word} {changed} schedule(s).", messages.SUCCESS)


@admin.register(ScheduleFire)
class ScheduleFireAdmin(admin.ModelAdmin):
    list_display = ("schedule", "nominal_at", "fired_at", "outcome", "task")
    list_filter = ("outcome",)
    list_select_related = ("schedule", "task")
    readonly_fields = ("schedule", "nominal_at", "fired_at", "outcome", "reason", "task")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
