from __future__ import annotations

from django.contrib import admin

from plugins_app.models import Plugin, PluginVersion


class PluginVersionInline(admin.TabularInline):
    model = PluginVersion
    fields = ("version", "sha256", "size", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Plugin)
class PluginAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "name",
        "version",
        "author",
        "is_active",
        "is_missing",
        "has_error",
        "updated_at",
    )
    list_filter = ("is_active", "is_missing", "author")
    search_fields = ("id", "name", "summary", "description", "author")
    readonly_fields = (
        "id", "name", "summary", "description", "version", "author", "file_path", "sha256", "md5",
        "size", "mtime", "functions", "params_schema", "takes_context", "timeout", "is_missing",
        "discovery_error", "install_count", "created_at", "updated_at",
    )  # fmt: skip
    inlines = [PluginVersionInline]

    @admin.display(boolean=True, description="error")
    def has_error(self, obj: Plugin) -> bool:
        return obj.has_error

    def has_add_permission(self, request) -> bool:
        return False  # plugins come from files, through discovery


@admin.register(PluginVersion)
class PluginVersionAdmin(admin.ModelAdmin):
    list_display = ("plugin", "version", "sha256", "size", "created_at")
    list_filter = ("plugin",)
    search_fields = ("plugin__id", "sha256", "version")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
