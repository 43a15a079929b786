"""Stripe subscription state -> the org's plan, status and billing period.

Everything that moves an org because of Stripe goes through :meth:`SubscriptionSync.apply`, under a
per-org Redis lock, with the subscription *as Stripe has it now* (re-fetched, never the webhook's
copy), so a replayed, duplicated or out-of-order delivery cannot move an org backwards. Plan and
status changes go through :class:`OrganizationService` (commit, audit trail, meter push).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from uuid import UUID

import structlog
from redis.exceptions import LockError
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.errors import StripeUnavailable
from app.billing.prices import parse_lookup_key
from app.billing.repositories import BillingAccountRepository
from app.billing.stripe_client import Subscription, gateway
from app.context import AppContext
from app.db.models import BillingAccount, Organization
from app.orgs.repositories import OrganizationRepository
from app.orgs.services import OrganizationService, sync_meter
from app.plans.periods import as_utc, monthly_period

log = structlog.get_logger(__name__)

SERVING = frozenset({"active", "trialing"})
DELINQUENT = frozenset({"past_due", "unpaid"})
LIVE = SERVING | DELINQUENT
ENDED = frozenset({"canceled", "incomplete_expired"})
LOCK_SECONDS = 60


def effective_status(sub: Subscription, now: datetime) -> str:
    """Stripe's status, except that a subscription set to cancel at period end counts as
    canceled once that period is over (Stripe's deletion webhook may lag, or never come)."""
    if (
        sub.status in LIVE
        and sub.cancel_at_period_end
        and sub.current_period_end is not None
        and sub.current_period_end <= now
    ):
        return "canceled"
    return sub.status


@contextlib.asynccontextmanager
async def org_lock(ctx: AppContext, organization_id: UUID) -> AsyncIterator[None]:
    """Serialize billing changes of one org across processes (fetch + apply happen inside)."""
    lock = ctx.redis.lock(
        f"tollgate:billing-lock:{{{organization_id}}}", timeout=LOCK_SECONDS, blocking_timeout=LOCK_SECONDS
    )
    if not await lock.acquire():
        raise StripeUnavailable("Another billing change of this organization is still running.")
    try:
        yield
    finally:
        with contextlib.suppress(LockError):
            await lock.release()


class SubscriptionSync:
    def __init__(self, session: AsyncSession, ctx: AppContext) -> None:
        self.session = session
        self.ctx = ctx
        self.accounts = BillingAccountRepository(session=session)
        self.orgs = OrganizationService(session, ctx)
        self.org_repo = OrganizationRepository(session=session)

    async def sync(self, organization_id: UUID, subscription_id: str, actor: str) -> str:
        """Fetch the subscription from Stripe and apply it, under the org's lock."""
        if await self.org_repo.get_one_or_none(id=organization_id) is None:
            await self.session.commit()
            return "ignored: no such organization"
        async with org_lock(self.ctx, organization_id):
            await self.session.commit()  # no transaction stays open across the Stripe call
            sub = await gateway(self.ctx).get_subscription(subscription_id)
            return await self.apply(organization_id, subscription_id, sub, actor)

    async def apply(
        self, organization_id: UUID, subscription_id: str, sub: Subscription | None, actor: str
    ) -> str:
        """Make the org match ``sub`` (Stripe's current state; None when Stripe has no such
        subscription). The caller holds the org's lock."""
        org = await self.org_repo.get_one_or_none(id=organization_id)
        if org is None:
            return "ignored: no such organization"
        await self.session.refresh(org)
        if org.billing_source == "marketplace":
            return "ignored: the organization is billed through a marketplace"
        if org.status == "deprovisioned":
            return "ignored: the organization is deprovisioned"
        account = await self.accounts.ensure(org.id)
        now = self.ctx.clock.now()
        if sub is None:
            if account.stripe_subscription_id == subscription_id and account.subscription_status in LIVE:
                return await self.end(org, account, actor, "subscription no longer exists in Stripe")
            await self.session.commit()
            return f"ignored: Stripe has no subscription {subscription_id}"
        status = effective_status(sub, now)
        current = account.stripe_subscription_id
        if current is not None and current != sub.id:
            if status not in LIVE:
                await self.session.commit()
                return f"ignored: {sub.id} ({status}) is not the organization's subscription"
            if account.subscription_status in LIVE and sub.created < (account.subscription_created or 0):
                await self.session.commit()
                return f"ignored: {sub.id} is older than the organization's subscription {current}"
        if account.stripe_customer_id is None and sub.customer:
            account.stripe_customer_id = sub.customer
        account.stripe_subscription_id = sub.id
        account.subscription_created = sub.created
        account.subscription_status = status
        account.price_lookup_key = sub.lookup_key
        account.cancel_at_period_end = sub.cancel_at_period_end
        account.synced_at = now
        if status in SERVING:
            return await self._serve(org, account, sub, actor)
        if status in DELINQUENT:
            return await self._delinquent(org, account, sub, actor)
        if status in ENDED:
            return await self.end(org, account, actor, f"subscription {status}")
        await self.session.commit()
        return f"waiting: subscription is {status}"

    # -- the three outcomes
    async def _serve(self, org: Organization, account: BillingAccount, sub: Subscription, actor: str) -> str:
        parsed = parse_lookup_key(sub.lookup_key)
        if parsed is None or parsed[0] not in self.ctx.catalog:
            await self.session.commit()
            log.warning("billing.unknown_price", organization_id=str(org.id), price=sub.price_id)
            return f"ignored: price {sub.price_id} is not a Tollgate plan"
        plan, version, _ = parsed
        dunning = account.dunning_state
        account.past_due_since = None
        account.dunning_state = None
        period_changed = self._set_period(org, sub)
        await self.orgs.change_plan(org, plan, actor, version=version, billing_source="stripe")
        if org.status == "past_due" or (org.status == "suspended" and dunning == "suspended"):
            await self.orgs.set_status(org, "active", actor)
        await self._finish(org, period_changed)
        return f"active: {plan}@v{version}"

    async def _delinquent(
        self, org: Organization, account: BillingAccount, sub: Subscription, actor: str
    ) -> str:
        if account.dunning_state is None:
            account.past_due_since = self.ctx.clock.now()
            account.dunning_state = "grace"
        period_changed = self._set_period(org, sub)
        if account.dunning_state == "grace":
            parsed = parse_lookup_key(sub.lookup_key)
            if parsed is not None and parsed[0] in self.ctx.catalog:
                await self.orgs.change_plan(org, parsed[0], actor, version=parsed[1], billing_source="stripe")
            await self.orgs.set_status(org, "past_due", actor)
        await self._finish(org, period_changed)
        since = as_utc(account.past_due_since or self.ctx.clock.now())
        until = since + timedelta(days=self.ctx.settings.stripe.grace_days)
        return f"past_due: {account.dunning_state}, grace ends {until.isoformat()}"

    async def end(self, org: Organization, account: BillingAccount, actor: str, why: str) -> str:
        """The subscription is over: back to the default (free) plan and its own period."""
        dunning = account.dunning_state
        account.subscription_status = "canceled"
        account.cancel_at_period_end = False
        account.past_due_since = None
        account.dunning_state = None
        period_changed = False
        if org.subscription_period_start is not None or org.subscription_period_end is not None:
            org.subscription_period_start = None
            org.subscription_period_end = None
            org.config_version += 1
            period_changed = True
        await self.orgs.change_plan(org, self.ctx.catalog.default_plan, actor, billing_source="self")
        if org.status == "past_due" or (org.status == "suspended" and dunning == "suspended"):
            await self.orgs.set_status(org, "active", actor)
        await self._finish(org, period_changed)
        return f"ended: {why}; now on {org.plan}"

    # -- helpers
    def _set_period(self, org: Organization, sub: Subscription) -> bool:
        """The meter's period follows the subscription's; an annual subscription's allowance is
        still monthly, so the org gets the month of it that contains now (the meter then rolls
        monthly from there until Stripe reports the next period)."""
        start, end = sub.current_period_start, sub.current_period_end
        if start is None or end is None or end <= start:
            return False
        if end - start > timedelta(days=31):
            start, month_end = monthly_period(start, max(start, self.ctx.clock.now()))
            end = min(end, month_end)
        old = (org.subscription_period_start, org.subscription_period_end)
        if old[0] is not None and old[1] is not None and (as_utc(old[0]), as_utc(old[1])) == (start, end):
            return False
        org.subscription_period_start, org.subscription_period_end = start, end
        org.config_version += 1
        return True

    async def _finish(self, org: Organization, period_changed: bool) -> None:
        await self.session.commit()
        if period_changed:
            await sync_meter(self.ctx, org)
