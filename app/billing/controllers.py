"""HTTP for billing: checkout and portal for org admins, and Stripe's webhook endpoint."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Controller, Request, get, post
from litestar.status_codes import HTTP_200_OK
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.principal import Principal
from app.billing import schemas
from app.billing.services import CheckoutService, WebhookService
from app.context import AppContext
from app.orgs.services import OrganizationService


class BillingController(Controller):
    path = "/v1/organizations"
    tags = ["billing"]

    @post(
        "/{organization_id:uuid}/checkout",
        status_code=HTTP_200_OK,
        summary="Buy or change a plan: a Stripe Checkout Session, or the subscription changed in place",
    )
    async def checkout(
        self,
        organization_id: UUID,
        data: schemas.CheckoutCreate,
        principal: Principal,
        session: AsyncSession,
        ctx: AppContext,
    ) -> schemas.Checkout:
        principal.require("admin", "org")
        org = await OrganizationService(session, ctx).get(principal, organization_id)
        return await CheckoutService(session, ctx).checkout(org, data, principal.actor)

    @get("/{organization_id:uuid}/billing", summary="The org's Stripe billing state")
    async def status(
        self, organization_id: UUID, principal: Principal, session: AsyncSession, ctx: AppContext
    ) -> schemas.BillingStatus:
        org = await OrganizationService(session, ctx).get(principal, organization_id)
        return await CheckoutService(session, ctx).status(org)

    @post(
        "/{organization_id:uuid}/portal",
        status_code=HTTP_200_OK,
        summary="A Stripe Customer Portal session (cards, invoices, cancellation)",
    )
    async def portal(
        self,
        organization_id: UUID,
        principal: Principal,
        session: AsyncSession,
        ctx: AppContext,
        data: schemas.PortalCreate | None = None,
    ) -> schemas.Portal:
        principal.require("admin", "org")
        org = await OrganizationService(session, ctx).get(principal, organization_id)
        return await CheckoutService(session, ctx).portal(org, data)


class StripeWebhookController(Controller):
    path = "/webhooks/stripe"
    tags = ["billing"]

    @post(
        "/",
        status_code=HTTP_200_OK,
        summary="Stripe webhook endpoint (signature-checked on the raw body; no bearer token)",
        security=[{}],
    )
    async def receive(
        self,
        request: Request[Any, Any, Any],
        session: AsyncSession,
        ctx: AppContext,
    ) -> schemas.WebhookReceipt:
        body = await request.body()
        return await WebhookService(session, ctx).receive(body, request.headers.get("stripe-signature"))
