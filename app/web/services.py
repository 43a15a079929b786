"""The billing page's work: single-use sign-in links, the page's data, and its three actions.

Actions call the billing and organization services (checkout, portal, org update), exactly as the
JSON API does; the page adds no billing logic of its own.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from uuid import UUID

from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.principal import Principal
from app.billing import schemas as billing_schemas
from app.billing.prices import plan_price, sellable
from app.billing.services import CheckoutService
from app.billing.stripe_client import gateway
from app.context import AppContext
from app.db.models import Organization
from app.marketplace.repositories import MarketplaceResourceRepository
from app.metering.config import org_limits
from app.metering.usage import read_usage
from app.notifications.repositories import UsageDailyRepository
from app.orgs import schemas as org_schemas
from app.orgs.services import OrganizationService
from app.plans.catalog import UNITS
from app.plans.periods import as_utc
from app.web import chart
from app.web.errors import (
    BudgetNotOffered,
    InvalidBudget,
    LinkUnusable,
    OrganizationGone,
    SessionStoreUnavailable,
)
from app.web.schemas import BillingSession

LINK_PREFIX = "tollgate:web:link:"
AUDIT_PREFIXES = ("plan.", "status.", "organization.", "trial.", "spike_protection.")
REASONS = {
    "usage_exceeded": "over the plan's allowance",
    "spike_protection": "spike protection",
    "on_demand_exhausted": "on-demand budget spent",
    "suspended": "organization suspended",
    "project_cap": "project cap reached",
}


# ---------------------------------------------------------------------------- sign-in links
def _link_key(token: str) -> str:
    return LINK_PREFIX + hashlib.sha256(token.encode()).hexdigest()


class BillingLinkService:
    """Single-use, short-lived sign-in links (like Stripe's portal sessions). Only a hash of the
    token is stored, in Redis; redeeming it is one atomic GETDEL, so a link opens one session."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    async def create(self, org: Organization, actor: str) -> BillingSession:
        if org.status == "deprovisioned":
            raise OrganizationGone
        token = secrets.token_urlsafe(32)
        ttl = self.ctx.settings.web.link_ttl
        expires = int(self.ctx.clock.time()) + ttl
        value = json.dumps({"o": str(org.id), "e": expires, "by": actor[:100]})
        try:
            await self.ctx.redis.set(_link_key(token), value, ex=ttl + 60)
        except (RedisError, OSError) as exc:
            raise SessionStoreUnavailable from exc
        path = f"/billing/session/{token}"
        return BillingSession(
            organization_id=org.id,
            url=self.ctx.settings.server.public_url.rstrip("/") + path,
            path=path,
            expires_at=datetime.fromtimestamp(expires, UTC),
        )

    async def redeem(self, token: str) -> UUID:
        """The org the link was made for; the link is spent either way."""
        if not token or len(token) > 100:
            raise LinkUnusable
        try:
            raw = await self.ctx.redis.getdel(_link_key(token))
        except (RedisError, OSError) as exc:
            raise SessionStoreUnavailable from exc
        if raw is None:
            raise LinkUnusable
        body = json.loads(raw)
        if int(body["e"]) <= self.ctx.clock.time():
            raise LinkUnusable
        return UUID(body["o"])


# ---------------------------------------------------------------------------- the page's data
@dataclass
class CategoryView:
    category: str
    title: str
    unit: str
    used: int
    allowance_used: int
    limit: int | None
    percent: int | None
    on_demand_used: int
    on_demand_cents: float
    refused: list[tuple[str, int]]
    chart: chart.Chart

    def amount(self, n: int) -> str:
        return quantity(n, self.unit)


@dataclass
class PlanOffer:
    name: str
    title: str
    monthly_cents: int
    annual_cents: int | None
    current: bool


@dataclass
class AuditLine:
    when: datetime
    text: str
    actor: str


@dataclass
class PageView:
    org: Organization
    plan_title: str
    plan_name: str
    plan_version: int
    status: str
    """``active``, ``trialing``, ``past_due``, ``marketplace``, ``suspended`` (or another org status)."""
    status_detail: str
    period_start: datetime
    period_end: datetime
    categories: list[CategoryView]
    budget_cents: int
    spent_cents: float
    budget_allowed: bool
    marketplace: str | None
    marketplace_url: str | None
    stripe_ready: bool
    has_customer: bool
    offers: list[PlanOffer]
    audit: list[AuditLine]
    today: date
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def budget_percent(self) -> int | None:
        if self.budget_cents <= 0:
            return None
        return min(100, int(self.spent_cents * 100 // self.budget_cents))


def quantity(n: int, unit: str) -> str:
    if unit == "byte":
        for size, name in ((10**9, "GB"), (10**6, "MB"), (10**3, "KB")):
            if n >= size:
                return f"{n / size:,.1f} {name}"
        return f"{n:,} bytes"
    return f"{n:,}"


def money(cents: float) -> str:
    return f"${cents / 100:,.2f}"


def _title(category: str) -> str:
    return category.replace("_", " ").capitalize() + "s"


def _audit_text(kind: str, detail: dict[str, Any]) -> str:
    if kind == "plan.changed":
        return f"Plan changed from {detail.get('from')} to {detail.get('to')}"
    if kind == "status.changed":
        return f"Status changed from {detail.get('from')} to {detail.get('to')}"
    if kind == "organization.created":
        return f"Organization created on {detail.get('plan')}"
    if kind == "organization.updated":
        after = detail.get("after") or {}
        if "on_demand_budget_cents" in after:
            return f"On-demand budget set to {money(int(after['on_demand_budget_cents']))}"
        return "Settings changed: " + ", ".join(sorted(after)) if after else "Settings changed"
    if kind == "trial.started":
        return f"Trial of {detail.get('plan')} started"
    if kind == "trial.ended":
        return f"Trial ended ({detail.get('outcome', 'ended')})"
    return kind.replace(".", " ").replace("_", " ").capitalize()


class BillingPageService:
    def __init__(self, session: AsyncSession, ctx: AppContext) -> None:
        self.session = session
        self.ctx = ctx

    async def view(self, org: Organization) -> PageView:
        ctx = self.ctx
        now = ctx.clock.now()
        limits = org_limits(org, ctx.catalog, now)
        plan = ctx.catalog.get(limits.plan, limits.version)
        usage = await read_usage(ctx.meter, str(org.id))
        billing = await CheckoutService(self.session, ctx).status(org)
        period_start = datetime.fromtimestamp(usage.period_start, UTC)
        period_end = datetime.fromtimestamp(usage.period_end, UTC)
        snapshots = await UsageDailyRepository(session=self.session).series(org.id, period_start)
        totals: dict[str, dict[date, int]] = {}
        for row in snapshots:
            totals.setdefault(row.category, {})[row.day] = row.used
        first = period_start.date()
        last = min(now, period_end - timedelta(seconds=1)).date()
        categories = []
        for c in usage.categories:
            series = dict(totals.get(c.category, {}))
            series[now.date()] = c.used  # the live counters are today's total
            allowance_used = c.used - c.on_demand_used
            percent = None
            if c.limit:
                percent = int(allowance_used * 100 // c.limit)
            elif c.limit == 0:
                percent = 100 if allowance_used else 0
            unit = UNITS.get(c.category, "event")
            categories.append(
                CategoryView(
                    category=c.category,
                    title=_title(c.category),
                    unit=unit,
                    used=c.used,
                    allowance_used=allowance_used,
                    limit=c.limit,
                    percent=percent,
                    on_demand_used=c.on_demand_used,
                    on_demand_cents=c.on_demand_cents,
                    refused=[(REASONS.get(r, r), n) for r, n in sorted(c.refused.items()) if n],
                    chart=chart.build(chart.daily_values(series, first, last)),
                )
            )
        marketplace = None
        if org.billing_source == "marketplace":
            resources = await MarketplaceResourceRepository(session=self.session).list(organization_id=org.id)
            marketplace = resources[0].provider if resources else "marketplace"
        status, detail = self._status(org, limits.plan != org.plan, billing, marketplace)
        if limits.plan != org.plan and org.trial_ends_at is not None:
            detail = f"Trial of {plan.title} until {as_utc(org.trial_ends_at):%d %b %Y}; then {org.plan}."
        offers = [
            PlanOffer(
                name=p.name,
                title=p.title,
                monthly_cents=int(p.monthly_price_cents or 0),
                annual_cents=(pp.amount_cents if (pp := plan_price(p, "year")) else None),
                current=p.name == org.plan,
            )
            for p in (ctx.catalog.current(n) for n in ctx.catalog.names())
            if sellable(p)
        ]
        entries, _ = await OrganizationService(self.session, ctx).audit_page(org, 50, 0)
        audit = [
            AuditLine(when=as_utc(e.created_at), text=_audit_text(e.kind, e.detail or {}), actor=e.actor)
            for e in entries
            if e.kind.startswith(AUDIT_PREFIXES)
        ][:20]
        await self.session.commit()
        return PageView(
            org=org,
            plan_title=plan.title,
            plan_name=plan.name,
            plan_version=plan.version,
            status=status,
            status_detail=detail,
            period_start=period_start,
            period_end=period_end,
            categories=categories,
            budget_cents=usage.on_demand_budget_cents,
            spent_cents=usage.on_demand_spent_cents,
            budget_allowed=budget_offered(org, ctx),
            marketplace=marketplace,
            marketplace_url=ctx.settings.web.marketplace_dashboards.get(marketplace or ""),
            stripe_ready=gateway(ctx).configured,
            has_customer=billing.has_customer,
            offers=offers,
            audit=audit,
            today=now.date(),
        )

    def _status(
        self,
        org: Organization,
        trialing: bool,
        billing: billing_schemas.BillingStatus,
        marketplace: str | None,
    ) -> tuple[str, str]:
        if org.status == "suspended":
            return "suspended", "Events are refused until the account is back in good standing."
        if org.status == "past_due":
            when = f"{billing.grace_ends_at:%d %b %Y %H:%M} UTC" if billing.grace_ends_at else "soon"
            return "past_due", f"The last payment failed. Service continues until {when}; update your card."
        if trialing:
            return "trialing", ""
        if marketplace is not None:
            return "marketplace", f"Billed through {marketplace.capitalize()}."
        if org.status != "active":
            return org.status, ""
        if billing.cancel_at_period_end:
            return "active", "The subscription ends at the end of this period."
        return "active", ""

    # -- actions
    async def checkout(
        self, org: Organization, principal: Principal, plan: str, interval: str
    ) -> billing_schemas.Checkout:
        base = self.ctx.settings.server.public_url.rstrip("/") + f"/billing/{org.id}"
        data = billing_schemas.CheckoutCreate(
            plan=plan,
            interval="year" if interval == "year" else "month",
            success_url=f"{base}?notice=checkout_success",
            cancel_url=f"{base}?notice=checkout_canceled",
        )
        return await CheckoutService(self.session, self.ctx).checkout(org, data, principal.actor)

    async def portal(self, org: Organization) -> billing_schemas.Portal:
        back = self.ctx.settings.server.public_url.rstrip("/") + f"/billing/{org.id}"
        return await CheckoutService(self.session, self.ctx).portal(
            org, billing_schemas.PortalCreate(return_url=back)
        )

    async def set_budget(self, org: Organization, principal: Principal, dollars: str) -> Organization:
        if not budget_offered(org, self.ctx):
            raise BudgetNotOffered
        try:
            amount = Decimal(dollars.strip().lstrip("$").replace(",", ""))
        except InvalidOperation as exc:
            raise InvalidBudget from exc
        if not amount.is_finite() or amount < 0 or amount > 1_000_000_000:
            raise InvalidBudget
        cents = int((amount * 100).to_integral_value())
        patch = org_schemas.OrganizationUpdate(on_demand_budget_cents=cents)
        return await OrganizationService(self.session, self.ctx).update(org, patch, principal)


def budget_offered(org: Organization, ctx: AppContext) -> bool:
    """On-demand budgets are for paid, self-serve-billed plans with on-demand prices."""
    if org.billing_source == "marketplace" or org.status in ("suspended", "deprovisioned"):
        return False
    limits = org_limits(org, ctx.catalog, ctx.clock.now())
    plan = ctx.catalog.get(limits.plan, limits.version)
    return bool(plan.monthly_price_cents) and not limits.hard_stop and bool(limits.on_demand_cents)
