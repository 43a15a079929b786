"""HTTP for entitlements, seats and trials. Thin: authorize, one service call, a schema."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.openapi import ResponseSpec
from litestar.params import HeaderParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_304_NOT_MODIFIED
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.principal import Principal
from app.context import AppContext
from app.entitlements import schemas
from app.entitlements.services import EntitlementService, FeatureChecker, SeatService, TrialService

AnyRequest = Request[Any, Any, Any]


def _matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 weak comparison of ``If-None-Match`` against our ETag."""
    if not if_none_match:
        return False
    tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return "*" in tags or etag in tags


def _checker(state: State) -> FeatureChecker:
    checker: FeatureChecker | None = state.get("entitlements_checker")
    if checker is None:
        checker = state.entitlements_checker = FeatureChecker(state.ctx)
    return checker


class EntitlementController(Controller):
    path = "/v1/organizations/{organization_id:uuid}"
    tags = ["entitlements"]

    @get(
        "/entitlements",
        summary="Features, limits, seats used and the running trial (with an ETag)",
        responses={HTTP_304_NOT_MODIFIED: ResponseSpec(None, description="Unchanged since the ETag")},
    )
    async def read(
        self,
        organization_id: UUID,
        principal: Principal,
        session: AsyncSession,
        ctx: AppContext,
        if_none_match: Annotated[str | None, HeaderParameter(name="If-None-Match")] = None,
    ) -> Response[schemas.Entitlements | None]:
        principal.require("admin", "org")
        service = EntitlementService(session, ctx)
        body, etag = await service.read(await service.get(principal, organization_id))
        headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
        if _matches(if_none_match, etag):
            return Response(None, status_code=HTTP_304_NOT_MODIFIED, headers=headers)
        return Response(body, headers=headers)

    @post(
        "/seats",
        status_code=HTTP_200_OK,
        summary="Report a member joining or leaving (a join beyond the seat limit is refused)",
    )
    async def seats(
        self,
        organization_id: UUID,
        data: schemas.SeatChange,
        principal: Principal,
        session: AsyncSession,
        ctx: AppContext,
    ) -> schemas.SeatResult:
        principal.require("admin", "org")
        org = await EntitlementService(session, ctx).get(principal, organization_id)
        return await SeatService(session, ctx).change(org, data)

    @post(
        "/trial",
        status_code=HTTP_201_CREATED,
        summary="Start a card-less trial of a higher self-serve plan",
    )
    async def start_trial(
        self,
        organization_id: UUID,
        data: schemas.TrialStart,
        principal: Principal,
        session: AsyncSession,
        ctx: AppContext,
    ) -> schemas.Trial:
        principal.require("admin", "org")
        org = await EntitlementService(session, ctx).get(principal, organization_id)
        return await TrialService(session, ctx).start(org, data, principal.actor)


class EntitlementCheckController(Controller):
    """The product's hot path: answered from Redis, like a quota consume (no database session)."""

    path = "/v1/entitlements"
    tags = ["entitlements"]

    @post("/check", status_code=HTTP_200_OK, summary="May this organization use this feature?")
    async def check(self, request: AnyRequest, data: schemas.CheckRequest) -> schemas.CheckResult:
        ctx: AppContext = request.app.state.ctx
        principal = await ctx.auth.authenticate(request.headers.get("authorization"))
        principal.require("admin", "ingest", "org")
        return await _checker(request.app.state).check(principal, data.organization_id, data.feature)
