"""HTTP for ingest services: consume, refund, lease. Callers hold an ``ingest`` or ``admin`` token.

These handlers are the hot path: they read the app context straight from state (no per-request
dependency graph) and make exactly one Redis round trip per request.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Controller, Request, Response, get, post
from litestar.status_codes import HTTP_200_OK
from litestar.types import ASGIApp, Receive, Scope, Send
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


def in_flight(state: Any) -> _InFlight:
    """The process' gate (one for the routes below and ``fastpath``)."""
    gate: _InFlight | None = state.get("quota_in_flight")
    if gate is None:
        gate = state["quota_in_flight"] = _InFlight(state.ctx.settings.meter.max_in_flight)
    return gate


def shed_overload(app: ASGIApp) -> ASGIApp:
    """Load shedding: beyond ``meter.max_in_flight`` concurrent quota requests, answer 503
    ``overloaded`` with ``Retry-After: 1`` before reading the body or doing any other work, so a
    flood is refused cheaply and the requests already admitted keep their latency (instead of all
    of them queueing until Redis calls time out)."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        gate = in_flight(scope["app"].state)
        if gate.busy >= gate.limit:
            await gate.refuse(send)
            return
        gate.busy += 1
        try:
            await app(scope, receive, send)
        finally:
            gate.busy -= 1

    return middleware


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
