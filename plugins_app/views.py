"""Plugin pages: the list (search and filters) and a plugin's page with its run form."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from plugins_app.forms import PluginRunForm
from plugins_app.models import Plugin
from tasks_app.api import visible_tasks

RECENT_RUNS = 10


@login_required
def plugin_list(request):
    """All registered plugins; `q` searches id/name/summary, `active` is 1 or 0, `author`
    matches exactly. An HTMX request (live search) gets only the rows."""
    q = request.GET.get("q", "").strip()[:200]
    active = request.GET.get("active", "")
    author = request.GET.get("author", "")
    plugins = Plugin.objects.order_by("id")
    if q:
        plugins = plugins.filter(
            Q(id__icontains=q) | Q(name__icontains=q) | Q(summary__icontains=q)
        )
    if active in {"1", "0"}:
        plugins = plugins.filter(is_active=active == "1")
    if author:
        plugins = plugins.filter(author=author)
    authors = Plugin.objects.exclude(author="").order_by("author").values_list("author", flat=True)
    context = {"plugins": plugins, "q": q, "active": active, "author": author,
               "authors": list(dict.fromkeys(authors))}  # fmt: skip
    template = "plugins/plugin_list.html"
    return render(request, f"{template}#plugin-rows" if request.htmx else template, context)


@login_required
@require_http_methods(["GET", "POST"])
def plugin_detail(request, plugin_id: str):
    """The plugin page. POST runs it: the form turns text into JSON values, `task_create`
    checks them against the schema; errors come back next to their fields (422, input kept),
    success goes to the new task's page."""
    from tasks_app.services import ParamsInvalid, PluginNotRunnable, task_create

    plugin = get_object_or_404(Plugin, pk=plugin_id)
    can_run = request.user.has_perm("plugins_app.run_plugin")
    form = PluginRunForm(
        plugin.params_schema, data=request.POST if request.method == "POST" else None
    )
    if request.method == "POST":
        if not can_run:
            raise PermissionDenied("You do not have permission to run plugins.")
        if form.is_valid():
            try:
                task = task_create(plugin=plugin, params=form.params(), user=request.user)
            except ParamsInvalid as exc:
                form.add_jsonschema_errors(exc.errors)
            except PluginNotRunnable as exc:
                form.add_error(None, f"Not started: {exc}.")
            else:
                return redirect("task_detail", task_id=task.pk)
    context = {
        "plugin": plugin, "form": form, "can_run": can_run,
        "versions": plugin.versions.defer("source")[:20],
        "runs": visible_tasks(request.user).filter(plugin=plugin)[:RECENT_RUNS],
    }  # fmt: skip
    return render(
        request, "plugins/plugin_detail.html", context, status=422 if form.errors else 200
    )
