"""Schedule pages: the list (with an HTMX enabled toggle), create/edit, and the live timing
preview. Access: you see your own schedules (all with `tasks_app.view_all_tasks`); the owner
or a superuser may change one; creating needs `plugins_app.run_plugin`."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from plugins_app.models import Plugin
from schedules_app import services
from schedules_app.forms import ScheduleForm, TimingForm, params_form_for
from schedules_app.models import Schedule


def _get_schedule_for_user(request, schedule_id: int, *, edit: bool = False) -> Schedule:
    """404 for a schedule the user may not see; 403 for one they may see but not change."""
    schedule = (
        Schedule.objects.visible_to(request.user)
        .select_related("plugin", "owner")
        .filter(pk=schedule_id)
        .first()
    )
    if schedule is None:
        raise Http404("No such schedule.")
    if edit and not schedule.can_edit(request.user):
        raise PermissionDenied("Only its owner or a superuser may change this schedule.")
    return schedule


@login_required
@require_GET
def schedule_list(request):
    rows = services.schedules_with_status(schedules=Schedule.objects.visible_to(request.user))
    can_create = request.user.has_perm(services.RUN_PERMISSION)
    return render(request, "schedules/schedule_list.html", {"rows": rows, "can_create": can_create})


@login_required
@require_http_methods(["GET", "POST"])
def schedule_create_view(request):
    if not request.user.has_perm(services.RUN_PERMISSION):
        raise PermissionDenied("You need the run_plugin permission to schedule plugins.")
    plugin = Plugin.objects.filter(pk=request.GET.get("plugin", "")).first()
    if plugin is None:
        plugins = Plugin.objects.filter(is_active=True, is_missing=False, discovery_error="")
        return render(request, "schedules/schedule_pick_plugin.html", {"plugins": plugins})
    post = request.POST if request.method == "POST" else None
    form = ScheduleForm(post)
    params_form = params_form_for(plugin.params_schema, data=post)
    if post is not None and _valid(form, params_form):
        try:
            services.schedule_create(
                plugin=plugin, owner=request.user, params=params_form.params(),
                timezone_name=form.cleaned_data["timezone"], enabled=form.cleaned_data["enabled"],
                overlap=form.cleaned_data["overlap"], **form.timing(),
            )  # fmt: skip
        except services.ScheduleInvalid as exc:
            form.add_service_errors(exc.errors, params_form)
        else:
            messages.success(request, f"Scheduled {plugin.pk}.")
            return redirect("schedule_list")
    return _render_form(request, plugin=plugin, form=form, params_form=params_form)


@login_required
@require_http_methods(["GET", "POST"])
def schedule_edit(request, schedule_id: int):
    schedule = _get_schedule_for_user(request, schedule_id, edit=True)
    post = request.POST if request.method == "POST" else None
    form = ScheduleForm(post) if post is not None else ScheduleForm.for_schedule(schedule)
    params_form = params_form_for(schedule.plugin.params_schema, data=post, params=schedule.params)
    if post is not None and _valid(form, params_form):
        try:
            services.schedule_update(
                schedule=schedule, params=params_form.params(),
                timezone=form.cleaned_data["timezone"], enabled=form.cleaned_data["enabled"],
                overlap=form.cleaned_data["overlap"], **form.timing(),
            )  # fmt: skip
        except services.ScheduleInvalid as exc:
            form.add_service_errors(exc.errors, params_form)
        else:
            messages.success(request, f"Saved schedule #{schedule.pk}.")
            return redirect("schedule_list")
    return _render_form(
        request, plugin=schedule.plugin, form=form, params_form=params_form, schedule=schedule
    )


def _valid(form, params_form) -> bool:
    return all([form.is_valid(), params_form.is_valid()])  # both, so both show their errors


def _render_form(request, *, plugin, form, params_form, schedule=None):
    context = {"plugin": plugin, "form": form, "params_form": params_form, "schedule": schedule}
    errors = form.errors or params_form.errors
    return render(request, "schedules/schedule_form.html", context, status=422 if errors else 200)


@login_required
@require_POST
def schedule_toggle(request, schedule_id: int):
    """Flip `enabled`. HTMX gets the row back; a plain form post goes back to the list."""
    schedule = _get_schedule_for_user(request, schedule_id, edit=True)
    services.schedule_update(schedule=schedule, enabled=not schedule.enabled)
    if not request.htmx:
        return redirect("schedule_list")
    (row,) = services.schedules_with_status(schedules=Schedule.objects.filter(pk=schedule.pk))
    context = {"row": row, "user": request.user}
    return render(request, "schedules/schedule_list.html#schedule-row", context)


@login_required
@require_POST
def schedule_delete_view(request, schedule_id: int):
    schedule = _get_schedule_for_user(request, schedule_id, edit=True)
    services.schedule_delete(schedule=schedule)
    messages.success(request, f"Deleted schedule #{schedule_id}.")
    return redirect("schedule_list")


@login_required
@require_GET
def schedule_preview(request):
    """The timing in words and its next five fire times, for the form (HTMX, as you type)."""
    form = TimingForm(request.GET)
    context: dict = {"errors": [], "description": "", "runs": []}
    if form.is_valid():
        try:
            context["description"], context["runs"] = services.timing_preview(
                timezone_name=form.cleaned_data["timezone"], **form.timing()
            )
        except services.ScheduleInvalid as exc:
            context["errors"] = [m for messages_ in exc.errors.values() for m in messages_]
    else:
        context["errors"] = [m for messages_ in form.errors.values() for m in messages_]
    context["tz"] = request.GET.get("timezone", "UTC")
    return render(request, "schedules/schedule_form.html#preview", context)
