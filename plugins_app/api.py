"""`/api/v1/plugins`: list, detail, and the superuser-only activate/deactivate/discover."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Q
from django.http import HttpRequest
from ninja import Field, Query, Router, Schema

from octopus.api_errors import ApiError, Text
from plugins_app.models import PLUGIN_ID_PATTERN, Plugin
from plugins_app.services import plugin_activate, plugin_deactivate, plugins_discover

router = Router(tags=["plugins"])


class PluginOut(Schema):
    id: str
    name: str
    summary: str
    description: str
    version: str
    author: str
    is_active: bool
    is_missing: bool
    runnable: bool
    sha256: str
    md5: str
    schema_: dict[str, Any] = Field(..., alias="schema")
    takes_context: bool
    functions: list[Any]
    error: str
    created_at: Any
    updated_at: Any

    @staticmethod
    def from_plugin(plugin: Plugin) -> dict:
        return {
            "id": plugin.id,
            "name": plugin.name,
            "summary": plugin.summary,
            "description": plugin.description,
            "version": plugin.version,
            "author": plugin.author,
            "is_active": plugin.is_active,
            "is_missing": plugin.is_missing,
            "runnable": plugin.is_runnable,
            "sha256": plugin.sha256,
            "md5": plugin.md5,
            "schema": plugin.params_schema or {},
            "takes_context": plugin.takes_context,
            "functions": plugin.functions or [],
            "error": plugin.discovery_error,
            "created_at": plugin.created_at,
            "updated_at": plugin.updated_at,
        }


class PluginListOut(Schema):
    total: int
    items: list[PluginOut]


class PluginListQuery(Schema):
    q: Text | None = Field(None, max_length=200, description="Text in id, name or summary.")
    active: bool | None = None
    author: Text | None = Field(None, max_length=200, description="Author contains this.")
    limit: int = Field(50, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=10_000_000)


class DiscoverOut(Schema):
    total: int
    summary: str
    report: dict[str, Any]


def _get_plugin(plugin_id: str) -> Plugin:
    valid = len(plugin_id) <= 100 and re.fullmatch(PLUGIN_ID_PATTERN, plugin_id)
    plugin = Plugin.objects.filter(pk=plugin_id).first() if valid else None
    if plugin is None:
        raise ApiError(404, f"No plugin {plugin_id!r}.")
    return plugin


def _require_superuser(request: HttpRequest) -> None:
    if not request.auth.is_superuser:
        raise ApiError(403, "Only a superuser may activate, deactivate or discover plugins.")


@router.get("", response=PluginListOut, by_alias=True)
def plugin_list(request: HttpRequest, filters: Query[PluginListQuery]):
    qs = Plugin.objects.all()
    if filters.q:
        text = filters.q
        qs = qs.filter(Q(id__icontains=text) | Q(name__icontains=text) | Q(summary__icontains=text))
    if filters.active is not None:
        qs = qs.filter(is_active=filters.active)
    if filters.author:
        qs = qs.filter(author__icontains=filters.author)
    page = qs.order_by("id")[filters.offset : filters.offset + filters.limit]
    return {"total": qs.count(), "items": [PluginOut.from_plugin(p) for p in page]}


# Before the `/{plugin_id}` routes, so `discover` is never read as a plugin id.
@router.post("/discover", response=DiscoverOut)
def plugin_discover(request: HttpRequest):
    _require_superuser(request)
    result = plugins_discover()
    return {
        "total": Plugin.objects.count(),
        "summary": result.summary(),
        "report": dataclasses.asdict(result),
    }


@router.get("/{plugin_id}", response=PluginOut, by_alias=True)
def plugin_detail(request: HttpRequest, plugin_id: str):
    return PluginOut.from_plugin(_get_plugin(plugin_id))


@router.post("/{plugin_id}/activate", response=PluginOut, by_alias=True)
def plugin_activate_view(request: HttpRequest, plugin_id: str):
    _require_superuser(request)
    plugin = _get_plugin(plugin_id)
    try:
        plugin_activate(plugin=plugin, user=request.auth)
    except ValidationError as exc:
        raise ApiError(409, " ".join(exc.messages))
    plugin.refresh_from_db()
    return PluginOut.from_plugin(plugin)


@router.post("/{plugin_id}/deactivate", response=PluginOut, by_alias=True)
def plugin_deactivate_view(request: HttpRequest, plugin_id: str):
    _require_superuser(request)
    plugin = _get_plugin(plugin_id)
    plugin_deactivate(plugin=plugin, user=request.auth)
    plugin.refresh_from_db()
    return PluginOut.from_plugin(plugin)
