from __future__ import annotations

from django.contrib import admin

from tasks_app.models import Task, TaskLog


class ReadOnlyAdmin(admin.ModelAdmin):
    """Runs and their logs are written by workers only; the admin shows them."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Task)
class TaskAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "plugin",
        "status",
        "user",
        "created_at",
        "started_at",
        "finished_at",
        "log_total",
    )
    list_filter = ("status", "plugin")
    search_fields = ("id", "plugin__id", "user__username", "error")
    date_hierarchy = "created_at"
    list_select_related = ("plugin", "user")


@admin.register(TaskLog)
class TaskLogAdmin(ReadOnlyAdmin):
    list_display = ("task", "seq", "timestamp", "level", "source", "short_message")
    list_filter = ("level",)
    search_fields = ("task__id",)
    list_select_related = ("task",)
    show_full_result_count = False  # counting a million rows on every page is not free

    @admin.display(description="message")
    def short_message(self, obj: TaskLog) -> str:
        return obj.message[:120]
