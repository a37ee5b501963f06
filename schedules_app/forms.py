"""The schedule form: which timing (cron / interval / once), its fields, enabled, overlap.

Params come from the plugin's own generated run form (`plugins_app.forms.PluginRunForm`),
rendered beside this one. These forms only parse text; `schedule_create` / `schedule_update`
validate, and their errors are put back with `add_service_errors`.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django import forms

from plugins_app.forms import EnumField, EnumListField, JSONValueField, LinesField, PluginRunForm
from schedules_app.cron import CronInvalid, timezone_get
from schedules_app.models import Overlap, Schedule

KIND_CHOICES = [
    ("cron", "Cron expression"),
    ("interval", "Every N seconds"),
    ("once", "Once, at a time"),
]
TIMING_FIELDS = {"cron": "cron", "interval": "interval_seconds", "once": "run_at"}


class TimingForm(forms.Form):
    """Just the timing: what the live preview reads."""

    kind = forms.ChoiceField(choices=KIND_CHOICES, widget=forms.RadioSelect, initial="cron")
    cron = forms.CharField(
        required=False, max_length=200,
        help_text="minute hour day-of-month month day-of-week, e.g. 0 2 * * 1-5",
        widget=forms.TextInput(attrs={"class": "mono", "placeholder": "0 2 * * 1-5"}),
    )  # fmt: skip
    timezone = forms.CharField(
        initial="UTC", max_length=64,
        help_text="IANA name: the cron and a one-off time are read in it.",
    )  # fmt: skip
    interval_seconds = forms.IntegerField(required=False, label="Interval (seconds)")
    run_at = forms.DateTimeField(
        required=False, label="Run at",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"],
    )  # fmt: skip

    @classmethod
    def for_schedule(cls, schedule: Schedule, **kwargs) -> TimingForm:
        run_at = schedule.run_at
        if run_at is not None:
            try:
                run_at = run_at.astimezone(timezone_get(schedule.timezone)).replace(tzinfo=None)
            except CronInvalid:
                pass
        initial = {
            "kind": schedule.kind, "cron": schedule.cron, "timezone": schedule.timezone,
            "interval_seconds": schedule.interval_seconds, "run_at": run_at,
            "enabled": schedule.enabled, "overlap": schedule.overlap,
        }  # fmt: skip
        return cls(initial=initial, **kwargs)

    def clean_run_at(self) -> datetime | None:
        # The browser sends a wall-clock time; it means that time in the chosen timezone.
        value = self.cleaned_data.get("run_at")
        return value.replace(tzinfo=None) if value is not None else None

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        kind = data.get("kind")
        field = TIMING_FIELDS.get(kind or "")
        if field and data.get(field) in (None, ""):
            self.add_error(field, "Enter a value for the timing you chose.")
        return data

    def timing(self) -> dict[str, Any]:
        """Keyword arguments for the services: only the chosen timing is set."""
        data = self.cleaned_data
        kind = data["kind"]
        run_at = data.get("run_at") if kind == "once" else None
        if run_at is not None:
            try:
                run_at = run_at.replace(tzinfo=timezone_get(data["timezone"]))
            except CronInvalid:
                run_at = None  # the service reports the timezone
        return {
            "cron": data.get("cron", "") if kind == "cron" else "",
            "interval_seconds": data.get("interval_seconds") if kind == "interval" else None,
            "run_at": run_at,
        }

    def add_service_errors(self, errors: dict[str, list[str]], params_form: PluginRunForm) -> None:
        """Put `ScheduleInvalid.errors` next to their fields, params ones on `params_form`."""
        params_errors = {}
        for name, messages in errors.items():
            if name == "params":
                params_errors[""] = messages
            elif name.startswith("params."):
                params_errors[name.removeprefix("params.")] = messages
            else:
                for message in messages:
                    self.add_error(name if name in self.fields else None, message)
        if params_errors:
            params_form.add_jsonschema_errors(params_errors)


class ScheduleForm(TimingForm):
    enabled = forms.BooleanField(required=False, initial=True)
    overlap = forms.ChoiceField(choices=Overlap.choices, initial=Overlap.SKIP)


def params_initial(form: PluginRunForm, params: dict) -> dict[str, Any]:
    """Saved params in the text form each generated field shows (for the edit page)."""
    initial: dict[str, Any] = {}
    for name, value in (params or {}).items():
        field = form.fields.get(name)
        if isinstance(field, EnumField | JSONValueField):
            initial[name] = json.dumps(value)
        elif isinstance(field, EnumListField):
            initial[name] = [json.dumps(v) for v in value or []]
        elif isinstance(field, LinesField):
            initial[name] = "\n".join(
                ("true" if v else "false") if isinstance(v, bool) else str(v) for v in value or []
            )
        elif field is not None:
            initial[name] = value
    return initial


def params_form_for(schema: dict, *, data=None, params: dict | None = None) -> PluginRunForm:
    form = PluginRunForm(schema, data=data)
    if params and data is None:
        form = PluginRunForm(schema, initial=params_initial(form, params))
    return form
