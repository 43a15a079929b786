"""The ingest hot path in front of Litestar: ``POST /v1/quotas/consume`` and ``/consume/batch``.

Most of a consume's CPU used to be per-request framework machinery (routing, two exception
middlewares, the request-id middleware, the Request object, kwargs extraction, Response ->
ASGIResponse). :func:`install` puts this module in front of the app's ASGI handler: a well-formed
request for one of those two paths is answered here, with the same load shedding, the same
authorization, the same service call, the same ``X-Request-ID`` and byte-identical answers; error
answers come from the app's own exception handlers. Everything else, and any body that does not
decode *strictly* into the request Struct (a lenient coercion, invalid JSON, a schema error, an odd
or large body, a client that disconnects), is replayed unchanged into Litestar, whose handlers stay
the documented routes (OpenAPI is unchanged). ``tests/metering/test_consume_fast_path.py`` holds
both paths to the same answers.
"""

from __future__ import annotations

from typing import Any

import msgspec
import structlog
from litestar import Litestar
from litestar.types import ASGIApp, Receive, ReceiveMessage, Scope, Send

from app.metering import schemas
from app.metering.controllers import _authorize, in_flight
from app.metering.services import QuotaService
from app.request_ids import new_request_id, send_with_request_id

_MAX_BODY = 1_000_000
"""Larger bodies take the Litestar path (which owns the request size limit and its 413)."""
_JSON = (b"content-type", b"application/json")
_ENCODE = msgspec.json.Encoder().encode


async def _consume_one(quotas: QuotaService, req: Any) -> tuple[Any, dict[str, str]]:
    return await quotas.consume(req)


async def _consume_batch(quotas: QuotaService, req: Any) -> tuple[Any, dict[str, str]]:
    return await quotas.consume_batch(req)


ROUTES = {
    "/v1/quotas/consume": (msgspec.json.Decoder(schemas.ConsumeRequest).decode, _consume_one),
    "/v1/quotas/consume/batch": (msgspec.json.Decoder(schemas.ConsumeBatchRequest).decode, _consume_batch),
}


def install(app: Litestar) -> None:
    """Serve the hot path ahead of ``app``'s router (see the module docstring)."""
    inner: ASGIApp = app.asgi_handler

    async def entry(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":  # type: ignore[comparison-overlap]
            method = scope["method"]  # type: ignore[typeddict-item]
            route = ROUTES.get(scope["path"]) if method == "POST" else None
            if route is not None:
                await _serve(app, inner, route, scope, receive, send)
                return
        await inner(scope, receive, send)

    app.asgi_handler = entry


async def _serve(
    app: Litestar, inner: ASGIApp, route: Any, scope: Scope, receive: Receive, send: Send
) -> None:
    auth: bytes | None = None
    rid: bytes | None = None
    length = 0
    for name, value in scope["headers"]:
        if name == b"authorization":
            if auth is None:
                auth = value
        elif name == b"content-length":
            length = int(value) if value.isdigit() else _MAX_BODY + 1
        elif name == b"x-request-id" and rid is None:
            rid = value[:100]
    if length > _MAX_BODY:
        await inner(scope, receive, send)
        return
    gate = in_flight(app.state)
    if gate.busy >= gate.limit:  # shed before reading the body, as the routes do
        await gate.refuse(send_with_request_id(send, rid or new_request_id()))
        return
    gate.busy += 1
    try:
        messages: list[ReceiveMessage] = []
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > _MAX_BODY:
                break
            chunks.append(chunk)
            if not message.get("more_body", False):
                decode, call = route
                try:
                    req = decode(b"".join(chunks))
                except msgspec.MsgspecError:
                    break  # Litestar decodes it (leniently) or answers its validation error
                await _answer(app, call, req, auth, rid or new_request_id(), scope, receive, send)
                return
    finally:
        gate.busy -= 1
    await inner(scope, _replay(messages, receive), send)


async def _answer(
    app: Litestar,
    call: Any,
    req: Any,
    auth: bytes | None,
    rid: bytes,
    scope: Scope,
    receive: Receive,
    send: Send,
) -> None:
    """Authorize, call the service once, send the answer; an error gets the app's error answer."""
    structlog.contextvars.bind_contextvars(request_id=rid.decode(errors="replace"))
    try:
        quotas = await _authorize(app.state, None if auth is None else auth.decode("latin-1"))
        out, headers = await call(quotas, req)
    except Exception as exc:
        await _error(app, exc, scope, receive, send_with_request_id(send, rid))
        return
    finally:
        structlog.contextvars.unbind_contextvars("request_id")
    body = _ENCODE(out)
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    raw += [_JSON, (b"content-length", str(len(body)).encode()), (b"x-request-id", rid)]
    await send({"type": "http.response.start", "status": 200, "headers": raw})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _error(app: Litestar, exc: Exception, scope: Scope, receive: Receive, send: Send) -> None:
    """The answer Litestar gives for ``exc``: the app's handler for its nearest class."""
    handler = next(
        (app.exception_handlers[c] for c in type(exc).__mro__ if c in app.exception_handlers), None
    )
    if handler is None:
        raise exc
    request = app.request_class(scope=scope, receive=receive, send=send)
    response = handler(request, exc)  # type: ignore[arg-type]
    await response.to_asgi_response(app=None, request=request)(scope, receive, send)


def _replay(messages: list[ReceiveMessage], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> ReceiveMessage:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed
