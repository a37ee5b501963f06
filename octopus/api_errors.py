"""The API's own error and input types, importable by routers without importing the API
(no import cycle)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator


class ApiError(Exception):
    """Raised by an API view to answer `status` with `{"detail", "errors"?}`
    (rendered by the handler in octopus/api.py)."""

    def __init__(self, status: int, detail: str, *, errors: dict[str, list[str]] | None = None):
        self.status = status
        self.detail = detail
        self.errors = errors
        super().__init__(detail)


def reject_nul(value: Any) -> Any:
    """PostgreSQL text and jsonb cannot hold NUL: refuse it at the door (a 422), in strings,
    keys and nested values alike, rather than fail in the database (a 500)."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("must not contain NUL characters")
    elif isinstance(value, dict):
        for key, item in value.items():
            reject_nul(key)
            reject_nul(item)
    elif isinstance(value, list):
        for item in value:
            reject_nul(item)
    return value


Text = Annotated[str, AfterValidator(reject_nul)]
JsonObject = Annotated[dict[str, Any], AfterValidator(reject_nul)]
