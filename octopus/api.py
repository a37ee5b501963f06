"""The JSON API (`/api/v1/`): one NinjaAPI, its two ways to authenticate, and error shapes.

Auth, tried in order:
- `Authorization: Bearer <token>` (accounts_app.ApiToken; a wrong or revoked token is a 401,
  never a fall-through to the session);
- the browser session; unsafe methods must carry the CSRF token (missing → 403).

Every error is JSON with a readable `detail`; input that fails validation is a 422 with
`errors: {field: [messages]}`. Routers live beside their apps (`plugins_app/api.py`,
`tasks_app/api.py`).
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.security import HttpBearer
from ninja.security.session import SessionAuth
from ninja.utils import check_csrf

from accounts_app.models import ApiToken
from octopus.api_errors import ApiError

SAFE_METHODS = {"GET", "HEAD", "OPTIONS", "TRACE"}


class BearerTokenAuth(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str):
        user = ApiToken.authenticate(token)
        if user is None:
            raise HttpError(401, "Invalid or revoked API token.")
        request.user = user
        return user

    def __call__(self, request: HttpRequest):
        header = request.headers.get("Authorization")
        if header is not None and not header.lower().startswith("bearer "):
            raise HttpError(401, "Unsupported Authorization header: use 'Bearer <token>'.")
        return super().__call__(request)


class SessionCsrfAuth(SessionAuth):
    """The logged-in browser user; unsafe methods also need a valid CSRF token."""

    def __call__(self, request: HttpRequest):
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return None
        if request.method not in SAFE_METHODS and check_csrf(request) is not None:
            raise HttpError(403, "CSRF check failed: send the X-CSRFToken header.")
        return user


api = NinjaAPI(
    title="Octopus API",
    version="1",
    description="Plugins, runs and their logs. Auth: session (with CSRF) or Bearer token.",
    auth=[BearerTokenAuth(), SessionCsrfAuth()],
    urls_namespace="api",
)


def _field_name(loc: list) -> str:
    # ["query", "limit"] → "limit"; ["body", "payload", "params"] → "params"; the body as a
    # whole (bad JSON, not an object) → "".
    parts = [str(p) for p in loc[1:]]
    if parts and parts[0] == "payload":
        parts = parts[1:]
    return ".".join(parts)


@api.exception_handler(ValidationError)
def _validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    errors: dict[str, list[str]] = {}
    for err in exc.errors:
        message = err.get("msg", "invalid value")
        if err.get("type") == "missing":
            message = "This field is required."
        errors.setdefault(_field_name(list(err.get("loc", []))), []).append(message)
    return api.create_response(request, {"detail": "Invalid input.", "errors": errors}, status=422)


@api.exception_handler(AuthenticationError)
def _authentication_error(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return api.create_response(
        request,
        {"detail": "Authentication required: log in, or send 'Authorization: Bearer <token>'."},
        status=401,
    )


@api.exception_handler(ApiError)
def _api_error(request: HttpRequest, exc: ApiError) -> HttpResponse:
    body: dict = {"detail": exc.detail}
    if exc.errors is not None:
        body["errors"] = exc.errors
    return api.create_response(request, body, status=exc.status)


def _register_routers() -> None:
    from plugins_app.api import router as plugins_router
    from schedules_app.api import router as schedules_router
    from tasks_app.api import router as tasks_router

    api.add_router("/plugins", plugins_router)
    api.add_router("/tasks", tasks_router)
    api.add_router("/schedules", schedules_router)


_register_routers()
