"""HTTP for ingest services: consume, refund, lease. Callers hold an ``ingest`` or ``admin`` token.

These handlers are the hot path: they read the app context straight from state (no per-request
dependency graph) and make exactly one Redis round trip per request.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar._asgi.utils import wrap_in_exception_handler
from litestar.status_codes import HTTP_200_OK
from litestar.types import ASGIApp, Receive, ReceiveMessage, Scope, Send
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.principal import Principal
from app.context import AppContext
from app.metering import schemas
from app.metering.services import QuotaService
from app.metering.usage import read_usage
from app.orgs.repositories import OrganizationRepository

AnyRequest = Request[Any, Any, Any]


async def _authorize(state: Any, authorization: str | None) -> QuotaService:
    """The one rule for the quota endpoints (Litestar handlers and the fast path alike): an
    ``ingest`` or ``admin`` service token."""
    ctx: AppContext = state.ctx
    principal = await ctx.auth.authenticate(authorization)
    principal.require("ingest", "admin")
    quotas: QuotaService = state.quotas
    return quotas


async def _ingest(request: AnyRequest) -> tuple[AppContext, QuotaService]:
    state = request.app.state
    return state.ctx, await _authorize(state, request.headers.get("authorization"))


class _InFlight:
    """The count of quota requests this process is serving, against ``meter.max_in_flight``."""

    __slots__ = ("body", "busy", "headers", "limit", "shed")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.busy = 0
        self.shed = 0
        """Requests refused so far (for operators and benchmarks)."""
        body = (
            b'{"error":"overloaded","detail":"More than %d quota requests are in flight in this '
            b'process; retry after the Retry-After seconds."}' % limit
        )
        self.body = body
        self.headers = (
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", b"1"),
        )

    async def refuse(self, send: Send) -> None:
        self.shed += 1
        # fresh messages each time: outer middleware may rewrite them
        await send({"type": "http.response.start", "status": 503, "headers": list(self.headers)})
        await send({"type": "http.response.body", "body": self.body, "more_body": False})


def shed_overload(app: ASGIApp) -> ASGIApp:
    """Load shedding: beyond ``meter.max_in_flight`` concurrent quota requests, answer 503
    ``overloaded`` with ``Retry-After: 1`` before reading the body or doing any other work, so a
    flood is refused cheaply and the requests already admitted keep their latency (instead of all
    of them queueing until Redis calls time out)."""

    fast = {path: _fast_route(decode, call, app) for path, (decode, call) in _FAST.items()}

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        state = scope["app"].state
        gate: _InFlight | None = state.get("quota_in_flight")
        if gate is None:
            gate = state["quota_in_flight"] = _InFlight(state.ctx.settings.meter.max_in_flight)
        if gate.busy >= gate.limit:
            await gate.refuse(send)
            return
        gate.busy += 1
        try:
            method = scope["method"]  # type: ignore[typeddict-item]  # quota routes are HTTP
            handler = fast.get(scope["path"], app) if method == "POST" else app
            await handler(scope, receive, send)
        finally:
            gate.busy -= 1

    return middleware


# ---------------------------------------------------------------------------- fast path
# ``POST /v1/quotas/consume`` and ``/consume/batch`` are the hot path: most of a request's CPU was
# Litestar's per-request machinery (Request and header objects, kwargs/signature model, Response ->
# ASGIResponse). For a well-formed request the middleware above answers directly: msgspec decodes
# the body strictly into the same Struct, the same auth and service calls run, and the answer is the
# bytes Litestar would send (same headers in the same order). Anything else (a body that does not
# decode strictly, a large or unusual body, a client disconnect) is replayed into the regular Litestar
# handler, so error answers and lenient coercions stay exactly Litestar's. Exceptions raised here go
# through the same exception handlers (``_fast_route`` wraps it in Litestar's exception middleware).
_FAST_MAX_BODY = 1_000_000
"""Larger bodies take the Litestar path (which owns the request size limit and its 413)."""
_JSON_HEADERS = ((b"content-type", b"application/json"),)
_ENCODE = msgspec.json.Encoder().encode


async def _consume_one(quotas: QuotaService, req: Any) -> tuple[Any, dict[str, str]]:
    return await quotas.consume(req)


async def _consume_batch(quotas: QuotaService, req: Any) -> tuple[Any, dict[str, str]]:
    return await quotas.consume_batch(req)


_FAST = {
    "/v1/quotas/consume": (msgspec.json.Decoder(schemas.ConsumeRequest).decode, _consume_one),
    "/v1/quotas/consume/batch": (
        msgspec.json.Decoder(schemas.ConsumeBatchRequest).decode,
        _consume_batch,
    ),
}


def _fast_route(decode: Any, call: Any, app: ASGIApp) -> ASGIApp:
    """The fast path of one endpoint, falling back to ``app`` (the Litestar route). Wrapped in
    Litestar's own exception middleware, as Litestar wraps a route handler when the route has
    middleware, so an error raised here gets the same answer, inside ``request_id_middleware``."""

    async def route(scope: Scope, receive: Receive, send: Send) -> None:
        await _fast_consume(decode, call, app, scope, receive, send)

    return wrap_in_exception_handler(route)


async def _fast_consume(
    decode: Any, call: Any, app: ASGIApp, scope: Scope, receive: Receive, send: Send
) -> None:
    auth: str | None = None
    length = 0
    for name, value in scope["headers"]:
        if name == b"authorization":
            if auth is None:
                auth = value.decode("latin-1")
        elif name == b"content-length":
            length = int(value) if value.isdigit() else _FAST_MAX_BODY + 1
    if length > _FAST_MAX_BODY:
        await app(scope, receive, send)
        return
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
        if size > _FAST_MAX_BODY:
            break
        chunks.append(chunk)
        if not message.get("more_body", False):
            try:
                req = decode(b"".join(chunks))
            except msgspec.MsgspecError:
                break  # Litestar decodes it (leniently) or answers its validation error
            # then, as in the handler after Litestar's body parsing: auth, one service call
            quotas = await _authorize(scope["app"].state, auth)
            out, headers = await call(quotas, req)
            await _send_json(send, _ENCODE(out), headers)
            return
    await app(scope, _replay(messages, receive), send)


async def _send_json(send: Send, body: bytes, headers: dict[str, str]) -> None:
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    raw += [*_JSON_HEADERS, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": raw})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _replay(messages: list[ReceiveMessage], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> ReceiveMessage:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed


class QuotaController(Controller):
    path = "/v1/quotas"
    tags = ["quotas"]
    middleware = [shed_overload]

    @post("/consume", status_code=HTTP_200_OK, summary="Check and count items for one org")
    async def consume(
        self,
        request: AnyRequest,
        data: schemas.ConsumeRequest,
    ) -> Response[schemas.ConsumeResponse]:
        _, quotas = await _ingest(request)
        body, headers = await quotas.consume(data)
        return Response(body, headers=headers)

    @post(
        "/consume/batch",
        status_code=HTTP_200_OK,
        summary="Check and count items for many orgs in one round trip",
    )
    async def consume_batch(
        self,
        request: AnyRequest,
        data: schemas.ConsumeBatchRequest,
    ) -> Response[schemas.ConsumeBatchResponse]:
        _, quotas = await _ingest(request)
        body, headers = await quotas.consume_batch(data)
        return Response(body, headers=headers)

    @post("/refund", status_code=HTTP_200_OK, summary="Give back units of events dropped later")
    async def refund(
        self,
        request: AnyRequest,
        data: schemas.RefundRequest,
    ) -> schemas.RefundResponse:
        _, quotas = await _ingest(request)
        return await quotas.refund(data)

    @post("/lease", status_code=HTTP_200_OK, summary="Reserve a block of units to decide on locally")
    async def lease(
        self,
        request: AnyRequest,
        data: schemas.LeaseRequest,
    ) -> Response[schemas.LeaseResponse]:
        _, quotas = await _ingest(request)
        body, headers = await quotas.lease(data)
        return Response(body, headers=headers)

    @post(
        "/lease/{lease_id:str}/return",
        status_code=HTTP_200_OK,
        summary="Return a lease's unused units (idempotent)",
    )
    async def return_lease(
        self,
        request: AnyRequest,
        lease_id: str,
        data: schemas.LeaseReturn,
    ) -> schemas.RefundResponse:
        _, quotas = await _ingest(request)
        return await quotas.return_lease(lease_id[:64], data)


class UsageController(Controller):
    path = "/v1/organizations/{organization_id:uuid}/usage"
    tags = ["quotas"]

    @get("/", summary="Usage of the current period, per category")
    async def usage(
        self, organization_id: UUID, principal: Principal, session: AsyncSession, ctx: AppContext
    ) -> schemas.UsageResponse:
        if principal.scope != "ingest":
            await OrganizationRepository(session=session).get_for(principal, organization_id)
        return await read_usage(ctx.meter, str(organization_id))
