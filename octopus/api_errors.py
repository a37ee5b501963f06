"""The API's own error, importable by routers without importing the API (no import cycle)."""

from __future__ import annotations


class ApiError(Exception):
    """Raised by an API view to answer `status` with `{"detail", "errors"?}`
    (rendered by the handler in octopus/api.py)."""

    def __init__(self, status: int, detail: str, *, errors: dict[str, list[str]] | None = None):
        self.status = status
        self.detail = detail
        self.errors = errors
        super().__init__(detail)
