"""Stripe billing: catalog sync, checkout, portal, webhook intake and processing, dunning,
cancellation at period end, and overage reporting.

Each public method that changes state commits before it returns. No database transaction is held
open across a Stripe call (each Stripe call is preceded by a commit). Every Stripe create call
carries an idempotency key derived from the business operation it performs.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import structlog
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing import schemas
from app.billing.errors import (
    CatalogNotSynced,
    IntervalNotOffered,
    InvalidEvent,
    MarketplaceBilled,
    NoBillingAccount,
    PlanAlreadyActive,
    PlanNotPurchasable,
    StripeNotConfigured,
    StripeUnavailable,
    WebhookNotConfigured,
)
from app.billing.prices import (
    ON_DEMAND_LOOKUP_KEY,
    ON_DEMAND_PRODUCT,
    catalog_prices,
    lookup_key,
    parse_lookup_key,
    plan_price,
    product_id,
    sellable,
)
from app.billing.repositories import BillingAccountRepository, OverageRepository, StripeEventRepository
from app.billing.stripe_client import (
    StripeGateway,
    gateway,
    invoice_subscription_id,
    normalize_subscription,
    verify_webhook,
)
from app.billing.subscriptions import LIVE, SERVING, SubscriptionSync, effective_status, org_lock
from app.context import AppContext
from app.db.models import BillingAccount, Organization, OverageReport
from app.db.upsert import upsert
from app.orgs.errors import UnknownPlan
from app.orgs.repositories import OrganizationRepository
from app.orgs.services import OrganizationService
from app.plans import Catalog
from app.plans.periods import as_utc
from app.settings import StripeSettings

log = structlog.get_logger(__name__)

PROCESS_JOB = "process_stripe_event"
EVENT_HORIZON = timedelta(days=3)
"""Unprocessed events older than this are left to operators (Stripe stops retrying after 3 days)."""


def _digest(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


def _default_url(configured: str, public_url: str, suffix: str) -> str:
    return configured or public_url.rstrip("/") + suffix


def _require_stripe(ctx: AppContext) -> StripeGateway:
    gw = gateway(ctx)
    if not gw.configured:
        raise StripeNotConfigured
    return gw


# ---------------------------------------------------------------------------- catalog
class CatalogSync:
    """Create or update Stripe Products and Prices from the plan catalog, idempotently by price
    lookup key: a second run finds everything in place and changes nothing."""

    def __init__(self, catalog: Catalog, gw: StripeGateway, settings: StripeSettings) -> None:
        self.catalog = catalog
        self.gw = gw
        self.settings = settings

    async def run(self) -> schemas.SyncReport:
        if not self.gw.configured:
            raise StripeNotConfigured
        items: list[schemas.SyncItem] = []
        currency = self.settings.currency
        prices = catalog_prices(self.catalog)
        existing = await self.gw.prices_by_lookup_keys(
            [p.lookup_key for p in prices] + [ON_DEMAND_LOOKUP_KEY]
        )
        for name in dict.fromkeys(p.plan.name for p in prices):
            title = self.catalog.current(name).title
            created = await self.gw.ensure_product(
                product_id(name), f"Tollgate {title}", {"tollgate_plan": name}, f"tollgate:product:{name}"
            )
            items.append(schemas.SyncItem("product", product_id(name), "created" if created else "unchanged"))
        for price in prices:
            current = existing.get(price.lookup_key)
            if (
                current is not None
                and current.active
                and current.unit_amount == price.amount_cents
                and current.currency == currency
                and current.interval == price.interval
                and current.product == price.product_id
            ):
                items.append(schemas.SyncItem("price", price.lookup_key, "unchanged", current.id))
                continue
            params = {**price.params(currency), "transfer_lookup_key": True}
            holder = current.id if current else "new"
            key = f"tollgate:price:{price.lookup_key}:{price.amount_cents}:{currency}:{holder}"
            new = await self.gw.create_price(params, key)
            if current is not None:
                await self.gw.archive_price(current.id)
            items.append(
                schemas.SyncItem("price", price.lookup_key, "updated" if current else "created", new.id)
            )
        items += await self._on_demand(existing.get(ON_DEMAND_LOOKUP_KEY), currency)
        return schemas.SyncReport(items)

    async def _on_demand(self, current: Any, currency: str) -> list[schemas.SyncItem]:
        """The billing meter for on-demand spend, and its metered price (1 cent per unit)."""
        items: list[schemas.SyncItem] = []
        event = self.settings.overage_meter_event
        meter = await self.gw.meter_id(event)
        if meter is None:
            meter = await self.gw.create_meter(
                event, "Tollgate on-demand usage (cents)", f"tollgate:meter:{event}"
            )
            items.append(schemas.SyncItem("meter", event, "created", meter))
        else:
            items.append(schemas.SyncItem("meter", event, "unchanged", meter))
        created = await self.gw.ensure_product(
            ON_DEMAND_PRODUCT,
            "Tollgate on-demand usage",
            {"tollgate_plan": "on_demand"},
            "tollgate:product:on_demand",
        )
        items.append(schemas.SyncItem("product", ON_DEMAND_PRODUCT, "created" if created else "unchanged"))
        if (
            current is not None
            and current.active
            and current.meter == meter
            and current.unit_amount == 1
            and current.currency == currency
        ):
            items.append(schemas.SyncItem("price", ON_DEMAND_LOOKUP_KEY, "unchanged", current.id))
            return items
        params = {
            "product": ON_DEMAND_PRODUCT,
            "currency": currency,
            "unit_amount": 1,
            "recurring": {"interval": "month", "usage_type": "metered", "meter": meter},
            "lookup_key": ON_DEMAND_LOOKUP_KEY,
            "nickname": "On-demand usage (1 cent per unit)",
            "transfer_lookup_key": True,
        }
        key = f"tollgate:price:{ON_DEMAND_LOOKUP_KEY}:{meter}:{currency}:{current.id if current else 'new'}"
        new = await self.gw.create_price(params, key)
        if current is not None:
            await self.gw.archive_price(current.id)
        items.append(
            schemas.SyncItem("price", ON_DEMAND_LOOKUP_KEY, "updated" if current else "created", new.id)
        )
        return items


# ---------------------------------------------------------------------------- checkout, portal
class CheckoutService:
    def __init__(self, session: AsyncSession, ctx: AppContext) -> None:
        self.session = session
        self.ctx = ctx
        self.accounts = BillingAccountRepository(session=session)

    async def checkout(self, org: Organization, data: schemas.CheckoutCreate, actor: str) -> schemas.Checkout:
        """A Checkout Session for ``data.plan``, or, when the org already has a live subscription,
        that subscription's price changed in place (prorated)."""
        gw = _require_stripe(self.ctx)
        if org.billing_source == "marketplace":
            raise MarketplaceBilled
        if data.plan not in self.ctx.catalog:
            raise UnknownPlan(f"Unknown plan {data.plan!r}; plans: {self.ctx.catalog.names()}")
        target = self.ctx.catalog.current(data.plan)
        if not sellable(target):
            if not target.self_serve:
                raise PlanNotPurchasable(
                    f"{target.title} is sold per contract, not through Checkout; contact sales."
                )
            raise PlanNotPurchasable(
                f"{target.title} costs nothing; to return to it, cancel the subscription "
                "in the billing portal."
            )
        price_spec = plan_price(target, data.interval)
        if price_spec is None:
            raise IntervalNotOffered(f"{target.title} has no {data.interval}ly price.")
        key = lookup_key(target, data.interval)
        async with org_lock(self.ctx, org.id):
            account = await self.accounts.ensure(org.id)
            await self.session.commit()
            current = parse_lookup_key(account.price_lookup_key)
            live = account.stripe_subscription_id is not None and account.subscription_status in LIVE
            if org.plan == target.name and (not live or current is None or current[2] == data.interval):
                raise PlanAlreadyActive(f"The organization is already on {target.title}.")
            price = (await gw.prices_by_lookup_keys([key])).get(key)
            if price is None or not price.active:
                raise CatalogNotSynced
            if live and account.stripe_subscription_id is not None:
                sub = await gw.get_subscription(account.stripe_subscription_id)
                if sub is not None and effective_status(sub, self.ctx.clock.now()) in LIVE:
                    if sub.price_id == price.id:
                        raise PlanAlreadyActive(f"The subscription is already on {target.title}.")
                    idem = (
                        f"tollgate:subscription-price:{sub.id}:{sub.price_id}:{price.id}:{org.config_version}"
                    )
                    updated = await gw.change_subscription_price(sub, price.id, idem)
                    await SubscriptionSync(self.session, self.ctx).apply(org.id, updated.id, updated, actor)
                    return schemas.Checkout(
                        mode="updated",
                        url=None,
                        session_id=None,
                        plan=target.name,
                        interval=data.interval,
                        subscription_id=updated.id,
                    )
            customer = await self._customer(org, account, gw)
            stripe_settings = self.ctx.settings.stripe
            public = self.ctx.settings.server.public_url
            success = data.success_url or _default_url(
                stripe_settings.success_url,
                public,
                "/billing?checkout=success&session_id={CHECKOUT_SESSION_ID}",
            )
            cancel = data.cancel_url or _default_url(
                stripe_settings.cancel_url, public, "/billing?checkout=canceled"
            )
            bucket = int(self.ctx.clock.time() // 300)
            idem = f"tollgate:checkout:{org.id}:{_digest(customer, price.id, success, cancel)}:{bucket}"
            session = await gw.create_checkout_session(
                customer=customer,
                price_id=price.id,
                organization_id=str(org.id),
                success_url=success,
                cancel_url=cancel,
                idempotency_key=idem,
            )
        log.info("billing.checkout_created", organization_id=str(org.id), plan=target.key, session=session.id)
        return schemas.Checkout(
            mode="checkout", url=session.url, session_id=session.id, plan=target.name, interval=data.interval
        )

    async def status(self, org: Organization) -> schemas.BillingStatus:
        account = await self.accounts.for_org(org.id)
        parsed = parse_lookup_key(account.price_lookup_key if account else None)
        grace_ends = None
        if account is not None and account.past_due_since is not None:
            grace_ends = as_utc(account.past_due_since) + timedelta(days=self.ctx.settings.stripe.grace_days)
        return schemas.BillingStatus(
            organization_id=org.id,
            plan=org.plan,
            billing_source=org.billing_source,
            status=org.status,
            has_customer=bool(account and account.stripe_customer_id),
            subscription_id=account.stripe_subscription_id if account else None,
            subscription_status=account.subscription_status if account else None,
            interval=parsed[2] if parsed else None,
            cancel_at_period_end=bool(account and account.cancel_at_period_end),
            current_period_end=org.subscription_period_end,
            dunning_state=account.dunning_state if account else None,
            grace_ends_at=grace_ends,
        )

    async def portal(self, org: Organization, data: schemas.PortalCreate | None) -> schemas.Portal:
        gw = _require_stripe(self.ctx)
        if org.billing_source == "marketplace":
            raise MarketplaceBilled
        account = await self.accounts.for_org(org.id)
        await self.session.commit()
        if account is None or account.stripe_customer_id is None:
            raise NoBillingAccount
        return_url = (data.return_url if data else None) or _default_url(
            self.ctx.settings.stripe.portal_return_url, self.ctx.settings.server.public_url, "/billing"
        )
        bucket = int(self.ctx.clock.time() // 60)
        idem = f"tollgate:portal:{org.id}:{_digest(account.stripe_customer_id, return_url)}:{bucket}"
        url = await gw.create_portal_session(account.stripe_customer_id, return_url, idem)
        return schemas.Portal(url=url)

    async def _customer(self, org: Organization, account: BillingAccount, gw: StripeGateway) -> str:
        """The org's Stripe customer, created once (the idempotency key makes a concurrent or
        retried creation return the same customer)."""
        if account.stripe_customer_id:
            return account.stripe_customer_id
        customer = await gw.create_customer(
            str(org.id),
            f"Tollgate organization {org.slug}",
            f"tollgate:customer:{org.id}:{account.customer_generation}",
        )
        account.stripe_customer_id = customer
        await self.session.commit()
        return customer


# ---------------------------------------------------------------------------- webhooks
class WebhookService:
    """Intake: verify, store once by event id, queue processing. Never acts inline."""

    def __init__(self, session: AsyncSession, ctx: AppContext) -> None:
        self.session = session
        self.ctx = ctx
        self.events = StripeEventRepository(session=session)

    async def receive(self, body: bytes, signature: str | None) -> schemas.WebhookReceipt:
        settings = self.ctx.settings.stripe
        secrets = [s.get_secret_value() for s in settings.webhook_secrets if s.get_secret_value().strip()]
        if not secrets:
            raise WebhookNotConfigured
        verify_webhook(body, signature, secrets, settings.webhook_tolerance, self.ctx.clock.time())
        event = _parse_event(body)
        new = await self.events.store_once(
            {
                "stripe_id": event["id"],
                "type": event["type"],
                "created": event["created"],
                "payload": event,
                "attempts": 0,
            }
        )
        await self.session.commit()
        pending = new
        if not new:
            row = await self.events.by_stripe_id(event["id"])
            pending = row is not None and row.processed_at is None
            await self.session.commit()
        if pending:
            await enqueue_event(self.ctx, event["id"])
        return schemas.WebhookReceipt(received=True, event_id=event["id"], duplicate=not new)


def _parse_event(body: bytes) -> dict[str, Any]:
    try:
        event = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidEvent("The body is not JSON.") from exc
    ok = (
        isinstance(event, dict)
        and isinstance(event.get("id"), str)
        and 0 < len(event["id"]) <= 255
        and isinstance(event.get("type"), str)
        and 0 < len(event["type"]) <= 100
        and isinstance(event.get("created"), int)
        and isinstance(event.get("data"), dict)
        and isinstance(event["data"].get("object"), dict)
    )
    if not ok:
        raise InvalidEvent("The body is not a Stripe event (id, type, created, data.object).")
    return event  # type: ignore[no-any-return]


async def enqueue_event(ctx: AppContext, event_id: str) -> bool:
    """Queue processing (deduplicated by job key). A failure is logged, not raised: the event is
    stored and the sweep job queues it again."""
    if ctx.queue is None:
        return False
    settings = ctx.settings.stripe
    try:
        await ctx.queue.enqueue(
            PROCESS_JOB,
            key=f"stripe:{event_id}",
            retries=settings.event_retries,
            retry_delay=settings.event_retry_delay,
            retry_backoff=300,
            timeout=120,
            event_id=event_id,
        )
    except (RedisError, OSError) as exc:
        log.warning("billing.enqueue_failed", event_id=event_id, error=type(exc).__name__)
        return False
    return True


class EventProcessor:
    """Processing of one stored event; idempotent and independent of arrival order."""

    def __init__(self, session: AsyncSession, ctx: AppContext) -> None:
        self.session = session
        self.ctx = ctx
        self.events = StripeEventRepository(session=session)
        self.accounts = BillingAccountRepository(session=session)
        self.sync = SubscriptionSync(session, ctx)

    async def process(self, event_id: str) -> str:
        row = await self.events.by_stripe_id(event_id)
        if row is None:
            return "missing"
        if row.processed_at is not None:
            return row.outcome or "processed"
        row.attempts += 1
        event_type, payload = row.type, row.payload
        await self.session.commit()
        actor = f"stripe:{event_type}:{event_id}"[:100]
        try:
            outcome, org_id = await self._dispatch(
                event_type, payload.get("data", {}).get("object", {}), actor
            )
        except Exception as exc:
            await self.session.rollback()
            failed = await self.events.by_stripe_id(event_id)
            if failed is not None:
                failed.outcome = f"failed: {type(exc).__name__}"[:200]
                await self.session.commit()
            raise
        done = await self.events.by_stripe_id(event_id)
        if done is not None:
            done.processed_at = self.ctx.clock.now()
            done.outcome = outcome[:200]
            done.organization_id = org_id
            await self.session.commit()
        log.info("billing.event_processed", event_id=event_id, type=event_type, outcome=outcome)
        return outcome

    async def _dispatch(self, event_type: str, obj: dict[str, Any], actor: str) -> tuple[str, UUID | None]:
        if event_type == "checkout.session.completed":
            org_id = await self._org_for(
                obj.get("customer"),
                obj.get("client_reference_id") or (obj.get("metadata") or {}).get("organization_id"),
            )
            sub_id = obj.get("subscription")
            if org_id is None:
                return "ignored: no organization for this checkout", None
            if not isinstance(sub_id, str):
                return "ignored: the session has no subscription", org_id
            return await self.sync.sync(org_id, sub_id, actor), org_id
        if not isinstance(obj.get("id"), str):
            return "ignored: the event's object has no id", None
        if event_type.startswith("customer.subscription."):
            sub = normalize_subscription(obj)
            org_id = await self._org_for(sub.customer, sub.organization_id)
            if org_id is None:
                return "ignored: no organization for this subscription", None
            return await self.sync.sync(org_id, sub.id, actor), org_id
        if event_type in ("invoice.paid", "invoice.payment_failed", "invoice.payment_succeeded"):
            sub_id = invoice_subscription_id(obj)
            if sub_id is None:
                return "ignored: the invoice has no subscription", None
            org_id = await self._org_for(obj.get("customer"), None)
            if org_id is None:
                fetched = await gateway(self.ctx).get_subscription(sub_id)
                org_id = await self._org_for(None, fetched.organization_id if fetched else None)
            if org_id is None:
                return "ignored: no organization for this invoice", None
            return await self.sync.sync(org_id, sub_id, actor), org_id
        if event_type == "customer.deleted":
            return await self._customer_deleted(str(obj.get("id") or ""), actor)
        return f"ignored: {event_type} is not handled", None

    async def _org_for(self, customer: Any, org_hint: Any) -> UUID | None:
        """The org of a Stripe object: by its customer (authoritative), else the org id Tollgate
        put in its metadata or client reference."""
        if isinstance(customer, str) and customer:
            account = await self.accounts.by_customer(customer)
            if account is not None:
                return account.organization_id
        if isinstance(org_hint, str) and org_hint:
            try:
                return UUID(org_hint)
            except ValueError:
                return None
        return None

    async def _customer_deleted(self, customer: str, actor: str) -> tuple[str, UUID | None]:
        account = await self.accounts.by_customer(customer) if customer else None
        if account is None:
            return "ignored: unknown customer", None
        org_id = account.organization_id
        async with org_lock(self.ctx, org_id):
            await self.session.refresh(account)
            if account.stripe_customer_id != customer:
                await self.session.commit()
                return "ignored: customer already detached", org_id
            account.stripe_customer_id = None
            account.customer_generation += 1
            if account.subscription_status in LIVE:
                org = await OrganizationRepository(session=self.session).get_one(id=org_id)
                # Stripe cancels a deleted customer's subscriptions with it.
                return await self.sync.end(org, account, actor, "the Stripe customer was deleted"), org_id
            await self.session.commit()
            return "customer detached", org_id


# ---------------------------------------------------------------------------- scheduled work
class BillingScheduler:
    """What the cron jobs do: re-queue stragglers, dunning, cancellations at period end."""

    def __init__(self, session: AsyncSession, ctx: AppContext) -> None:
        self.session = session
        self.ctx = ctx
        self.accounts = BillingAccountRepository(session=session)
        self.events = StripeEventRepository(session=session)
        self.sync = SubscriptionSync(session, ctx)

    async def sweep_events(self, min_age: timedelta = timedelta(seconds=60)) -> int:
        """Queue stored events that were never processed (enqueue failed, retries exhausted)."""
        now = self.ctx.clock.now()
        ids = await self.events.unprocessed(now - min_age, now - EVENT_HORIZON, limit=500)
        await self.session.commit()
        return sum([await enqueue_event(self.ctx, event_id) for event_id in ids])

    async def enforce_dunning(self) -> int:
        """Past-due orgs whose grace is over get ``stripe.dunning_action`` (downgrade to the free
        plan, or suspension) unless Stripe says they have paid meanwhile."""
        now = self.ctx.clock.now()
        grace = timedelta(days=self.ctx.settings.stripe.grace_days)
        due = [
            a.organization_id
            for a in await self.accounts.in_grace()
            if a.past_due_since and as_utc(a.past_due_since) + grace <= now
        ]
        await self.session.commit()
        acted = 0
        for org_id in due:
            try:
                acted += await self._dun(org_id, now, grace)
            except StripeUnavailable:
                log.warning("billing.dunning_deferred", organization_id=str(org_id))
        return acted

    async def _dun(self, org_id: UUID, now: datetime, grace: timedelta) -> int:
        actor = "stripe:dunning"
        async with org_lock(self.ctx, org_id):
            account = await self.accounts.for_org(org_id)
            if account is None or account.dunning_state != "grace" or account.past_due_since is None:
                await self.session.commit()
                return 0
            if as_utc(account.past_due_since) + grace > now or account.stripe_subscription_id is None:
                await self.session.commit()
                return 0
            sub_id = account.stripe_subscription_id
            await self.session.commit()
            sub = await gateway(self.ctx).get_subscription(sub_id)
            if sub is None or effective_status(sub, now) in SERVING or effective_status(sub, now) not in LIVE:
                await self.sync.apply(org_id, sub_id, sub, actor)  # paid or ended meanwhile
                return 1
            org = await OrganizationRepository(session=self.session).get_one(id=org_id)
            orgs = OrganizationService(self.session, self.ctx)
            if self.ctx.settings.stripe.dunning_action == "suspend":
                account.dunning_state = "suspended"
                await orgs.set_status(org, "suspended", actor)
            else:
                account.dunning_state = "downgraded"
                await orgs.change_plan(org, self.ctx.catalog.default_plan, actor)
            await self.session.commit()
            log.info("billing.dunning_applied", organization_id=str(org_id), action=account.dunning_state)
            return 1

    async def end_canceled_periods(self) -> int:
        """Orgs whose subscription is set to cancel at period end drop to free when it ends."""
        now = self.ctx.clock.now()
        candidates: list[tuple[UUID, str]] = []
        org_repo = OrganizationRepository(session=self.session)
        for account in await self.accounts.canceling():
            org = await org_repo.get_one_or_none(id=account.organization_id)
            end = org.subscription_period_end if org else None
            if end is not None and as_utc(end) <= now and account.stripe_subscription_id:
                candidates.append((account.organization_id, account.stripe_subscription_id))
        await self.session.commit()
        ended = 0
        for org_id, sub_id in candidates:
            try:
                outcome = await self.sync.sync(org_id, sub_id, "stripe:period-end")
            except StripeUnavailable:
                log.warning("billing.period_end_deferred", organization_id=str(org_id))
                continue
            ended += outcome.startswith("ended")
        return ended


# ---------------------------------------------------------------------------- overage
class OverageService:
    """Reports on-demand spend to a Stripe billing meter: per (org, category, period) the cents
    not yet reported. The meter event's identifier names the cumulative total it brings the
    period to, so a retry after a lost acknowledgement is refused by Stripe as a duplicate
    instead of billed twice."""

    def __init__(self, session: AsyncSession, ctx: AppContext) -> None:
        self.session = session
        self.ctx = ctx
        self.reports = OverageRepository(session=session)

    async def report(self) -> int:
        """Report every pending delta; returns the number of meter events sent."""
        gw = gateway(self.ctx)
        if not gw.configured:
            return 0
        now = self.ctx.clock.now()
        event_name = self.ctx.settings.stripe.overage_meter_event
        pending = await self.reports.pending(ended_after=now - timedelta(days=35))
        await self.session.commit()
        sent = 0
        for usage, org, account, reported in pending:
            if org.plan not in self.ctx.catalog or account.stripe_customer_id is None:
                continue
            unit = self.ctx.catalog.get(org.plan, org.plan_version).on_demand_cents.get(usage.category, 0)
            cents = math.floor(usage.on_demand_used * unit + 1e-9)
            delta = cents - reported
            if delta <= 0:
                continue
            start = as_utc(usage.period_start)
            end = as_utc(usage.period_end)
            when = min(now, end - timedelta(seconds=1))
            if when < now - timedelta(days=34):
                log.warning("billing.overage_too_old", organization_id=str(org.id), period=start.isoformat())
                continue
            identifier = f"tollgate:{org.id}:{usage.category}:{int(start.timestamp())}:{cents}"
            accepted = await gw.report_meter_event(
                event_name, identifier, account.stripe_customer_id, delta, int(when.timestamp())
            )
            sent += accepted
            stamp = datetime.now(UTC)
            await upsert(
                self.session,
                OverageReport,
                [
                    {
                        "id": uuid.uuid4(),
                        "organization_id": org.id,
                        "category": usage.category,
                        "period_start": start,
                        "reported_cents": cents,
                        "identifier": identifier,
                        "created_at": stamp,
                        "updated_at": stamp,
                    }
                ],
                conflict=["organization_id", "category", "period_start"],
                update=["reported_cents", "identifier", "updated_at"],
            )
            await self.session.commit()
            log.info(
                "billing.overage_reported",
                organization_id=str(org.id),
                category=usage.category,
                cents=delta,
                duplicate=not accepted,
            )
        return sent
