"""``X-Request-ID``: echoed when the caller sent one, assigned otherwise, on every answer and bound
to every log line of the request. Used by the app's middleware and by the ingest hot path
(``app/metering/fastpath.py``), which answers ahead of that middleware."""

from __future__ import annotations

import binascii
import os

import structlog
from litestar.types import ASGIApp, Message, Receive, Scope, Send


def new_request_id() -> bytes:
    """128 random bits in hex, as ``uuid4().hex`` but without building a UUID."""
    return binascii.hexlify(os.urandom(16))


def request_id_of(scope: Scope) -> bytes:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            return value[:100]
    return new_request_id()


def send_with_request_id(send: Send, rid: bytes) -> Send:
    """``send``, adding ``X-Request-ID: rid`` to the response's headers."""

    async def send_with_id(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), (b"x-request-id", rid)]
        await send(message)

    return send_with_id


def request_id_middleware(app: ASGIApp) -> ASGIApp:
    """Echo or assign ``X-Request-ID`` and bind it to every log line of the request."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # type: ignore[comparison-overlap]
            await app(scope, receive, send)
            return
        rid = request_id_of(scope)
        structlog.contextvars.bind_contextvars(request_id=rid.decode(errors="replace"))
        try:
            await app(scope, receive, send_with_request_id(send, rid))
        finally:
            structlog.contextvars.unbind_contextvars("request_id")

    return middleware
