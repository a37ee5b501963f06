"""Plugin admin: the list, activation (superuser-only, audited), rediscovery and rollback.

Every field is read-only — a plugin's metadata is what its file says. State changes go through
`plugins_app.services`, which checks for a superuser and writes the admin log itself.
"""

from __future__ import annotations

import difflib
import json

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from plugins_app.discovery import PluginParseError, parse_plugin_source
from plugins_app.models import Plugin, PluginVersion
from plugins_app.services import (
    plugin_activate,
    plugin_deactivate,
    plugin_file_path,
    plugin_rollback,
    plugins_discover,
)

MAX_DIFF_LINES = 400


class HasErrorFilter(admin.SimpleListFilter):
    title = "discovery error"
    parameter_name = "has_error"

    def lookups(self, request, model_admin):
        return [("yes", "With an error"), ("no", "Without an error")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.exclude(discovery_error="")
        if self.value() == "no":
            return queryset.filter(discovery_error="")
        return queryset


class PluginVersionInline(admin.TabularInline):
    model = PluginVersion
    fields = ("version", "sha256", "size", "created_at", "rollback")
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = "version history"

    def get_queryset(self, request):
        # A source can be up to 1 MiB per version; the table shows none of it.
        return super().get_queryset(request).defer("source")

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="")
    def rollback(self, obj: PluginVersion) -> str:
        if obj.sha256 == obj.plugin.sha256:
            return "current"
        url = reverse("admin:plugins_app_plugin_rollback", args=[obj.plugin_id, obj.pk])
        return format_html('<a href="{}">Roll back to this version…</a>', url)


def _pretty_json(value) -> str:
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, ensure_ascii=False))


@admin.register(Plugin)
class PluginAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "version", "author", "is_active", "error_flag", "last_change")
    list_filter = ("is_active", HasErrorFilter, "is_missing", "author")
    search_fields = ("id", "name", "summary", "description", "author")
    actions = ["activate_selected", "deactivate_selected", "rediscover"]
    change_list_template = "admin/plugins_app/plugin/change_list.html"
    fieldsets = [
        (None, {"fields": ["id", "name", "summary", "description", "version", "author"]}),
        ("State", {"fields": ["is_active", "is_missing", "discovery_error", "install_count"]}),
        ("File", {"fields": ["file_path", "sha256", "md5", "size", "mtime"]}),
        ("Interface", {"fields": ["takes_context", "timeout", "schema", "function_list"]}),
        ("Dates", {"fields": ["created_at", "updated_at"]}),
    ]
    readonly_fields = [f for _, opts in fieldsets for f in opts["fields"]]
    inlines = [PluginVersionInline]

    @admin.display(boolean=True, description="error", ordering="discovery_error")
    def error_flag(self, obj: Plugin) -> bool:
        return obj.has_error

    @admin.display(description="last change", ordering="updated_at")
    def last_change(self, obj: Plugin):
        return obj.updated_at

    @admin.display(description="params schema")
    def schema(self, obj: Plugin) -> str:
        return _pretty_json(obj.params_schema)

    @admin.display(description="functions")
    def function_list(self, obj: Plugin) -> str:
        return _pretty_json(obj.functions)

    # Plugins come from files (discovery) and keep their task history: no add, edit or delete.
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_activate_permission(self, request) -> bool:
        """Gate for the actions below: plugins are code that every worker runs."""
        return request.user.is_active and request.user.is_superuser

    @admin.action(permissions=["activate"], description="Activate selected plugins")
    def activate_selected(self, request, queryset) -> None:
        self._apply(request, queryset, plugin_activate, "activated")

    @admin.action(permissions=["activate"], description="Deactivate selected plugins")
    def deactivate_selected(self, request, queryset) -> None:
        self._apply(request, queryset, plugin_deactivate, "deactivated")

    @admin.action(permissions=["activate"], description="Rediscover all plugin files")
    def rediscover(self, request, queryset) -> None:
        self._rediscover(request)

    def _apply(self, request, queryset, service, verb: str) -> None:
        done = []
        for plugin in queryset:
            try:
                if service(plugin=plugin, user=request.user):
                    done.append(plugin.pk)
            except ValidationError as exc:
                self.message_user(request, " ".join(exc.messages), messages.ERROR)
        if done:
            self.message_user(request, f"{verb.capitalize()}: {', '.join(done)}.")
        else:
            self.message_user(request, f"Nothing {verb}.", messages.WARNING)

    def _rediscover(self, request) -> None:
        result = plugins_discover()
        level = messages.WARNING if result.errors else messages.SUCCESS
        lines = [line.strip() for line in result.summary().splitlines()]
        self.message_user(request, "Discovery: " + "; ".join(lines), level)

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("rediscover/", wrap(self.rediscover_view), name="plugins_app_plugin_rediscover"),
            path(
                "<path:object_id>/rollback/<int:version_id>/",
                wrap(self.rollback_view),
                name="plugins_app_plugin_rollback",
            ),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "can_rediscover": request.user.is_superuser}
        return super().changelist_view(request, extra_context)

    def rediscover_view(self, request: HttpRequest) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_activate_permission(request):
            raise PermissionDenied
        self._rediscover(request)
        return HttpResponseRedirect(reverse("admin:plugins_app_plugin_changelist"))

    def rollback_view(self, request: HttpRequest, object_id: str, version_id: int):
        """GET: a confirmation page with the diff; POST: write the file and re-register."""
        if not self.has_activate_permission(request):
            raise PermissionDenied
        plugin = get_object_or_404(Plugin, pk=object_id)
        version = get_object_or_404(PluginVersion, pk=version_id, plugin=plugin)
        change_url = reverse("admin:plugins_app_plugin_change", args=[plugin.pk])
        if request.method == "POST":
            try:
                plugin_rollback(version=version, user=request.user)
            except ValidationError as exc:
                self.message_user(request, " ".join(exc.messages), messages.ERROR)
            else:
                label = f"version {version.version or '?'} ({version.sha256[:12]})"
                self.message_user(request, f"Rolled {plugin.pk} back to {label}.")
            return HttpResponseRedirect(change_url)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Roll back {plugin.pk}?",
            "plugin": plugin,
            "version": version,
            "is_current": version.sha256 == plugin.sha256 and not plugin.is_missing,
            "diff": _diff(plugin, version),
            "version_error": _parse_error(version.source),
            "change_url": change_url,
        }
        return TemplateResponse(
            request, "admin/plugins_app/plugin/rollback_confirmation.html", context
        )


def _parse_error(source: str) -> str:
    """Why that source would not register ("" if it would) — so a rollback to a broken
    version is a choice made knowingly. Parses only; nothing is imported."""
    try:
        parse_plugin_source(source)
    except PluginParseError as exc:
        return str(exc)
    return ""


def _diff(plugin: Plugin, version: PluginVersion) -> str:
    """Unified diff from the file as it is on disk now to the version's source (capped)."""
    try:
        current = plugin_file_path(plugin).read_text(encoding="utf-8", errors="replace")
    except (OSError, ValidationError):
        current = ""
    lines = list(
        difflib.unified_diff(
            current.splitlines(keepends=True),
            version.source.splitlines(keepends=True),
            fromfile=f"{plugin.file_path} (now)",
            tofile=f"{plugin.file_path} ({version.version or '?'}, {version.sha256[:12]})",
        )
    )
    if len(lines) > MAX_DIFF_LINES:
        lines = [*lines[:MAX_DIFF_LINES], f"… {len(lines) - MAX_DIFF_LINES} more lines\n"]
    return "".join(lines)


@admin.register(PluginVersion)
class PluginVersionAdmin(admin.ModelAdmin):
    list_display = ("plugin", "version", "sha256", "size", "created_at")
    list_filter = ("plugin",)
    search_fields = ("plugin__id", "sha256", "version")
    fields = ("plugin", "version", "sha256", "md5", "size", "created_at", "source_code")
    readonly_fields = fields

    @admin.display(description="source")
    def source_code(self, obj: PluginVersion) -> str:
        return format_html("<pre>{}</pre>", obj.source)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
