"""The run form of a plugin, generated from its params JSON Schema (draft 2020-12).

One Django form field per top-level property: text, number, checkbox, a select for an enum,
a textarea "one per line" for a list of scalars, checkboxes for a list of enum values, and a
JSON textarea for anything else (objects, unions, untyped). Defaults fill the initial values,
descriptions become help text. The form only turns text into JSON values; the schema itself
is enforced by `tasks_app.services.task_create`, whose per-field errors are put back on the
form with `add_jsonschema_errors`.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms

FORM_PREFIX = "param"


def _types(prop: dict) -> list[str]:
    kind = prop.get("type")
    if isinstance(kind, str):
        return [kind]
    if isinstance(kind, list):
        return [k for k in kind if isinstance(k, str)]
    return []


def _is_nullable(prop: dict) -> bool:
    return "null" in _types(prop)


def _scalar_type(prop: dict) -> str | None:
    """The one non-null JSON type of a property, or None if it has several or none."""
    kinds = [k for k in _types(prop) if k != "null"]
    return kinds[0] if len(kinds) == 1 else None


class JSONValueField(forms.CharField):
    """Any JSON value typed as JSON text (objects, unions, untyped parameters)."""

    widget = forms.Textarea(attrs={"rows": 3, "spellcheck": "false", "class": "mono"})

    def to_python(self, value: Any) -> Any:
        text = super().to_python(value)
        if text in self.empty_values:
            return None
        try:
            return json.loads(text)
        except ValueError as exc:
            raise forms.ValidationError(f"Enter valid JSON ({exc.msg}).", code="invalid")


class LinesField(forms.CharField):
    """A list of scalars, one item per line; items are converted to `item_type`."""

    widget = forms.Textarea(attrs={"rows": 3, "spellcheck": "false"})

    def __init__(self, *, item_type: str | None, **kwargs):
        self.item_type = item_type
        kwargs.setdefault("strip", False)
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> Any:
        text = super().to_python(value)
        lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
        if not lines:
            return None
        return [self._convert(line, number) for number, line in enumerate(lines, 1)]

    def _convert(self, line: str, number: int) -> Any:
        try:
            if self.item_type == "integer":
                return int(line)
            if self.item_type == "number":
                return float(line)
        except ValueError:
            kind = "a whole number" if self.item_type == "integer" else "a number"
            raise forms.ValidationError(f"Line {number}: {line!r} is not {kind}.", code="invalid")
        if self.item_type == "boolean":
            if line.lower() in {"true", "yes", "1"}:
                return True
            if line.lower() in {"false", "no", "0"}:
                return False
            raise forms.ValidationError(f"Line {number}: {line!r} is not true or false.")
        return line


def _enum_choices(values: list) -> list[tuple[str, str]]:
    return [(json.dumps(v), "—" if v is None else str(v)) for v in values]


class EnumField(forms.TypedChoiceField):
    """A select of the schema's enum values; keeps each value's JSON type."""

    def __init__(self, *, values: list, **kwargs):
        choices = _enum_choices(values)
        if not kwargs.get("required", True) and "initial" not in kwargs:
            choices = [("", "(plugin default)"), *choices]
        super().__init__(choices=choices, coerce=json.loads, **kwargs)


class EnumListField(forms.TypedMultipleChoiceField):
    def __init__(self, *, values: list, **kwargs):
        super().__init__(
            choices=_enum_choices(values),
            coerce=json.loads,
            widget=forms.CheckboxSelectMultiple,
            **kwargs,
        )


def field_for_property(prop: dict, *, required: bool) -> forms.Field:
    """The form field for one schema property (see the module docstring for the mapping)."""
    prop = prop if isinstance(prop, dict) else {}
    common: dict[str, Any] = {
        "required": required and not _is_nullable(prop),
        "help_text": str(prop.get("description") or ""),
    }
    default = prop.get("default")
    has_default = "default" in prop
    kind = _scalar_type(prop)
    # Initial values are given in the form the widget shows (JSON text for enums and JSON
    # inputs, lines for lists), so a bound form and a fresh one render the same way.
    if isinstance(prop.get("enum"), list) and prop["enum"]:
        if has_default:
            common["initial"] = json.dumps(default)
        return EnumField(values=prop["enum"], **common)
    if has_default and kind in {"boolean", "integer", "number", "string"}:
        common["initial"] = default
    if kind == "boolean":
        # An unticked checkbox sends nothing: it means false, never "missing".
        return forms.BooleanField(**{**common, "required": False})
    if kind == "integer":
        return forms.IntegerField(**common, widget=forms.NumberInput(attrs={"step": "1"}))
    if kind == "number":
        return forms.FloatField(**common, widget=forms.NumberInput(attrs={"step": "any"}))
    if kind == "string" and prop.get("format") != "json":
        widget = forms.TextInput()
        if (prop.get("maxLength") or 0) > 500:
            widget = forms.Textarea(attrs={"rows": 4})
        return forms.CharField(**common, strip=False, widget=widget)
    if kind == "array":
        items = prop.get("items") if isinstance(prop.get("items"), dict) else {}
        if isinstance(items.get("enum"), list) and items["enum"]:
            if has_default and isinstance(default, list):
                common["initial"] = [json.dumps(v) for v in default]
            return EnumListField(values=items["enum"], **common)
        item_type = _scalar_type(items)
        if item_type in {"string", "integer", "number", "boolean"} and "prefixItems" not in prop:
            if has_default and isinstance(default, list):
                common["initial"] = "\n".join(_line_text(v) for v in default)
            return LinesField(item_type=item_type, **common)
    if has_default:
        common["initial"] = json.dumps(default)
    return JSONValueField(**common)


def _line_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class PluginRunForm(forms.Form):
    """Built per plugin: `PluginRunForm(schema, data=request.POST or None)`."""

    def __init__(self, schema: dict | None, *args, **kwargs):
        kwargs.setdefault("prefix", FORM_PREFIX)
        super().__init__(*args, **kwargs)
        schema = schema if isinstance(schema, dict) else {}
        required = set(schema.get("required") or [])
        for name, prop in (schema.get("properties") or {}).items():
            self.fields[name] = field_for_property(prop, required=name in required)
            self.fields[name].label = name

    def params(self) -> dict[str, Any]:
        """The JSON params from a valid form. Empty optional inputs are left out, so the
        plugin's own default applies (and a `None` is only sent when chosen explicitly)."""
        out: dict[str, Any] = {}
        for name, value in self.cleaned_data.items():
            field = self.fields[name]
            if isinstance(field, forms.BooleanField):
                out[name] = bool(value)
            elif isinstance(field, EnumField):
                if value != "":  # "" is "(plugin default)"; a chosen null stays None
                    out[name] = value
            elif value is not None and value != "" and value != []:
                out[name] = value
        return out

    def add_jsonschema_errors(self, errors: dict[str, list[str]]) -> None:
        """Put `ParamsInvalid.errors` next to their fields (unknown names on top)."""
        for name, messages in errors.items():
            target = name if name in self.fields else None
            for message in messages:
                text = message if target else (f"{name}: {message}" if name else message)
                self.add_error(target, text)
