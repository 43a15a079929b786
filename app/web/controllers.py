"""The hosted billing page, and the API that hands out its single-use sign-in links.

Two ways in, one session: a billing-session link (``POST /v1/organizations/{id}/billing-session``,
like Stripe's portal sessions) and marketplace SSO both set the signed ``tollgate_session`` cookie
(``app.web.session``) bound to one org, then land on ``/billing/{org_id}``. Every form carries an
anti-forgery token bound to that cookie; actions answer 303 (to Stripe, or back to the page).
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

import structlog
from litestar import Controller, Request, Response, get, post
from litestar.enums import RequestEncodingType
from litestar.exceptions import HTTPException, ValidationException
from litestar.params import Body
from litestar.response import Redirect
from litestar.status_codes import HTTP_201_CREATED, HTTP_303_SEE_OTHER
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.principal import Principal
from app.context import AppContext
from app.db.models import Organization
from app.errors import TollgateError
from app.marketplace.deps import marketplace_secrets
from app.orgs.repositories import OrganizationRepository
from app.orgs.services import OrganizationService
from app.web import pages
from app.web import session as web_session
from app.web.errors import CsrfFailed, NotSignedIn, OrganizationGone, OtherOrganization
from app.web.schemas import BillingSession
from app.web.services import BillingLinkService, BillingPageService, money

log = structlog.get_logger(__name__)

AnyRequest = Request[Any, Any, Any]
Form = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]

STATUS_LABELS = {
    "active": "Active",
    "trialing": "Trialing",
    "past_due": "Past due",
    "marketplace": "Marketplace-billed",
    "suspended": "Suspended",
}
NOTICES: dict[str, tuple[str, str, str]] = {
    "checkout_success": (
        "ok",
        "Payment received",
        "Your new plan takes effect as soon as Stripe confirms it.",
    ),
    "checkout_canceled": ("ok", "Checkout canceled", "Nothing was charged; your plan is unchanged."),
    "plan_updated": ("ok", "Plan changed", "Your subscription was changed in place and prorated."),
    "budget_saved": ("ok", "Budget saved", "The new on-demand budget applies right away."),
    "plan_already_active": ("error", "No change", "You are already on this plan."),
    "stripe_not_configured": ("error", "Unavailable", "Card payments are not set up on this deployment."),
    "stripe_unavailable": ("error", "Try again", "Stripe could not be reached; nothing was changed."),
    "stripe_catalog_not_synced": ("error", "Unavailable", "This plan cannot be bought yet; contact support."),
    "plan_not_purchasable": ("error", "Not available", "This plan is not sold online; contact sales."),
    "interval_not_offered": ("error", "Not available", "This plan has no yearly price."),
    "no_billing_account": ("error", "No card yet", "Card and invoices appear after your first purchase."),
    "marketplace_billed": ("error", "Billed by your marketplace", "Change the plan in your marketplace."),
    "budget_not_offered": ("error", "Not available", "On-demand budgets are for paid plans billed by card."),
    "invalid_budget": ("error", "Check the amount", "Enter the budget in dollars, such as 50 or 12.50."),
    "payment_failed": ("error", "Payment failed", "Your card was declined; update it in the card portal."),
}


def _key(request: AnyRequest) -> str:
    return marketplace_secrets(request.app.state).session_key


def _refusal(request: AnyRequest, exc: Exception) -> Response[str]:
    ctx: AppContext = request.app.state.ctx
    if isinstance(exc, TollgateError):
        status, message = exc.status_code, str(exc.detail)
        title = "Not signed in" if status == 401 else ("Unavailable" if status >= 500 else "Refused")
    elif isinstance(exc, (ValidationException, HTTPException)) and exc.status_code < 500:
        status, title, message = exc.status_code, "Refused", "This request is not valid."
    else:
        log.exception("web.page_failed", path=request.url.path, error=type(exc).__name__)
        status, title, message = 500, "Error", "Something went wrong on our side; it has been logged."
    return pages.message_page(title, message, status, ctx.settings)


async def _signed_in(
    request: AnyRequest, ctx: AppContext, session: AsyncSession, organization_id: UUID
) -> tuple[web_session.WebSession, Organization]:
    """The browser's session, if it is for ``organization_id``; refusals otherwise."""
    current = web_session.read(_key(request), request.cookies.get(web_session.COOKIE_NAME), ctx.clock.time())
    if current is None:
        raise NotSignedIn
    if current.organization_id != organization_id:
        raise OtherOrganization
    org = await OrganizationRepository(session=session).get_one_or_none(id=organization_id)
    if org is None or org.status == "deprovisioned":
        raise OrganizationGone
    return current, org


def _check_csrf(request: AnyRequest, form: dict[str, str]) -> None:
    if not web_session.csrf_ok(_key(request), request.cookies.get(web_session.COOKIE_NAME), form.get("csrf")):
        raise CsrfFailed


def _page_principal(current: web_session.WebSession, org: Organization) -> Principal:
    who = current.user or current.source
    return Principal(scope="org", name=f"billing-page:{who}"[:90], organization_id=org.id)


def _back(org_id: UUID, notice: str) -> Redirect:
    code = notice if notice in NOTICES else "error"
    return Redirect(f"/billing/{org_id}?notice={code}", status_code=HTTP_303_SEE_OTHER)


class BillingPageController(Controller):
    path = "/billing"
    tags = ["web"]
    include_in_schema = False
    exception_handlers = {  # type: ignore[assignment]
        TollgateError: _refusal,
        ValidationException: _refusal,
        HTTPException: _refusal,
        Exception: _refusal,
    }

    @get("/", summary="The signed-in org's billing page")
    async def mine(self, request: AnyRequest, ctx: AppContext, checkout: str | None = None) -> Redirect:
        current = web_session.read(
            _key(request), request.cookies.get(web_session.COOKIE_NAME), ctx.clock.time()
        )
        if current is None:
            raise NotSignedIn
        notice = {"success": "?notice=checkout_success", "canceled": "?notice=checkout_canceled"}
        return Redirect(f"/billing/{current.organization_id}{notice.get(checkout or '', '')}")

    @get("/static/billing.css", summary="The page's stylesheet", cache=3600)
    async def stylesheet(self) -> Response[bytes]:
        return Response(pages.STYLESHEET, media_type="text/css; charset=utf-8")

    @get("/session/{token:str}", summary="Redeem a single-use billing-session link")
    async def redeem(self, request: AnyRequest, token: str, ctx: AppContext) -> Redirect:
        organization_id = await BillingLinkService(ctx).redeem(token)
        ttl = ctx.settings.web.session_ttl
        value = web_session.issue(
            _key(request),
            web_session.WebSession(
                organization_id=organization_id,
                source="link",
                user=None,
                expires_at=int(ctx.clock.time()) + ttl,
            ),
        )
        secure = ctx.settings.server.public_url.startswith("https://")
        return Redirect(
            f"/billing/{organization_id}",
            status_code=HTTP_303_SEE_OTHER,
            cookies=[web_session.cookie(value, ttl, secure)],
            headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
        )

    @get("/{organization_id:uuid}", summary="Plan, usage and billing of one org (session cookie required)")
    async def page(
        self,
        request: AnyRequest,
        organization_id: UUID,
        session: AsyncSession,
        ctx: AppContext,
        notice: str | None = None,
    ) -> Response[str]:
        _, org = await _signed_in(request, ctx, session, organization_id)
        view = await BillingPageService(session, ctx).view(org)
        kind, label, text = NOTICES.get(
            notice or "", ("error", "That did not work", "Nothing was changed; try again shortly.")
        )
        body = pages.render(
            "billing.html",
            v=view,
            csrf=web_session.csrf_token(_key(request), request.cookies.get(web_session.COOKIE_NAME) or ""),
            notice={"kind": kind, "label": label, "text": text} if notice else None,
            status_labels=STATUS_LABELS,
            money=money,
        )
        return pages.html(body, settings=ctx.settings)

    @post(
        "/{organization_id:uuid}/checkout", status_code=HTTP_303_SEE_OTHER, summary="Upgrade or change plan"
    )
    async def checkout(
        self, request: AnyRequest, organization_id: UUID, data: Form, session: AsyncSession, ctx: AppContext
    ) -> Redirect:
        current, org = await _signed_in(request, ctx, session, organization_id)
        _check_csrf(request, data)
        try:
            result = await BillingPageService(session, ctx).checkout(
                org, _page_principal(current, org), data.get("plan", "")[:50], data.get("interval", "month")
            )
        except TollgateError as exc:
            return _back(org.id, exc.code)
        if result.mode == "checkout" and result.url:
            return Redirect(result.url, status_code=HTTP_303_SEE_OTHER)
        return _back(org.id, "plan_updated")

    @post("/{organization_id:uuid}/portal", status_code=HTTP_303_SEE_OTHER, summary="Stripe Customer Portal")
    async def portal(
        self, request: AnyRequest, organization_id: UUID, data: Form, session: AsyncSession, ctx: AppContext
    ) -> Redirect:
        _, org = await _signed_in(request, ctx, session, organization_id)
        _check_csrf(request, data)
        try:
            result = await BillingPageService(session, ctx).portal(org)
        except TollgateError as exc:
            return _back(org.id, exc.code)
        return Redirect(result.url, status_code=HTTP_303_SEE_OTHER)

    @post(
        "/{organization_id:uuid}/budget", status_code=HTTP_303_SEE_OTHER, summary="Set the on-demand budget"
    )
    async def budget(
        self, request: AnyRequest, organization_id: UUID, data: Form, session: AsyncSession, ctx: AppContext
    ) -> Redirect:
        current, org = await _signed_in(request, ctx, session, organization_id)
        _check_csrf(request, data)
        try:
            await BillingPageService(session, ctx).set_budget(
                org, _page_principal(current, org), data.get("budget", "")[:40]
            )
        except TollgateError as exc:
            return _back(org.id, exc.code)
        return _back(org.id, "budget_saved")


class BillingSessionController(Controller):
    path = "/v1/organizations"
    tags = ["web"]

    @post(
        "/{organization_id:uuid}/billing-session",
        status_code=HTTP_201_CREATED,
        summary="A single-use, short-lived link that opens the org's hosted billing page",
    )
    async def create(
        self, organization_id: UUID, principal: Principal, session: AsyncSession, ctx: AppContext
    ) -> BillingSession:
        principal.require("admin", "org")
        org = await OrganizationService(session, ctx).get(principal, organization_id)
        return await BillingLinkService(ctx).create(org, principal.actor)
