"""`{% plugin_schedules plugin %}`: the schedules section of a plugin's page."""

from __future__ import annotations

from django import template

register = template.Library()


@register.inclusion_tag("schedules/_plugin_schedules.html", takes_context=True)
def plugin_schedules(context, plugin) -> dict:
    """The schedules of `plugin` the current user may see. Costs three queries."""
    from schedules_app.models import Schedule
    from schedules_app.services import RUN_PERMISSION, schedules_with_status

    user = context["request"].user
    visible = Schedule.objects.visible_to(user).filter(plugin=plugin)
    return {
        "plugin": plugin,
        "user": user,
        "rows": schedules_with_status(schedules=visible),
        "can_schedule": plugin.is_runnable and user.has_perm(RUN_PERMISSION),
    }
