"""One error base for the whole service, rendered as JSON by exactly one handler.

Domain errors subclass :class:`TollgateError` in their package's ``errors.py``; they read as facts
(``OrganizationNotFound``) and carry a stable machine ``code`` and an HTTP status. Library and driver
messages never reach clients.
"""

from __future__ import annotations

from typing import Any, ClassVar


class TollgateError(Exception):
    """Base of every error a client may see."""

    status_code: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    default_detail: ClassVar[str] = "The request could not be served."

    def __init__(self, detail: Any = None, *, headers: dict[str, str] | None = None) -> None:
        self.detail = detail if detail is not None else self.default_detail
        self.headers = headers or {}
        super().__init__(str(self.detail))


class NotFound(TollgateError):
    status_code = 404
    code = "not_found"
    default_detail = "Not found."


class Conflict(TollgateError):
    status_code = 409
    code = "conflict"
    default_detail = "The request conflicts with the current state."


class InvalidInput(TollgateError):
    status_code = 422
    code = "invalid"
    default_detail = "The request is not valid."


class Unauthorized(TollgateError):
    status_code = 401
    code = "unauthorized"
    default_detail = "Missing or invalid credentials."


class Forbidden(TollgateError):
    status_code = 403
    code = "forbidden"
    default_detail = "These credentials may not do this."


class ServiceUnavailable(TollgateError):
    status_code = 503
    code = "unavailable"
    default_detail = "A backing service is unavailable; try again shortly."
