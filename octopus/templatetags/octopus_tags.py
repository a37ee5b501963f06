"""Template filters the pages share."""

from __future__ import annotations

import json

from django import template

register = template.Library()


@register.filter
def pretty_json(value) -> str:
    """A JSON value as indented text (escaped by the template like any other string)."""
    try:
        return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError):
        return str(value)


@register.filter
def paragraphs(text: str) -> list[str]:
    """Docstring text as paragraphs: blank lines split them, hard-wrapped lines are joined."""
    blocks = (block.strip() for block in str(text or "").split("\n\n"))
    return [" ".join(line.strip() for line in block.splitlines()) for block in blocks if block]
