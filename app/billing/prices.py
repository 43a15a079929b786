"""How plans map to Stripe prices: lookup keys and price parameters. Pure, no I/O.

A price's lookup key names the plan *version* and the interval (``tollgate_team_v1_month``), so a
grandfathered org keeps its price and a webhook's price tells which plan version was bought.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from app.plans import Catalog, PlanVersion

Interval = Literal["month", "year"]
PREFIX = "tollgate_"
ON_DEMAND_LOOKUP_KEY = "tollgate_on_demand_cents"
ON_DEMAND_PRODUCT = "tollgate_on_demand"
_KEY = re.compile(r"^tollgate_(?P<plan>.+)_v(?P<version>\d+)_(?P<interval>month|year)$")


@dataclass(frozen=True, slots=True)
class PlanPrice:
    """One Stripe price a plan version sells at."""

    plan: PlanVersion
    interval: Interval
    amount_cents: int

    @property
    def lookup_key(self) -> str:
        return lookup_key(self.plan, self.interval)

    @property
    def product_id(self) -> str:
        return product_id(self.plan.name)

    def params(self, currency: str) -> dict[str, Any]:
        return {
            "product": self.product_id,
            "currency": currency,
            "unit_amount": self.amount_cents,
            "recurring": {"interval": self.interval},
            "lookup_key": self.lookup_key,
            "nickname": f"{self.plan.title} v{self.plan.version} ({self.interval}ly)",
            "metadata": {
                "tollgate_plan": self.plan.name,
                "tollgate_plan_version": str(self.plan.version),
                "interval": self.interval,
            },
        }


def lookup_key(plan: PlanVersion, interval: str) -> str:
    return f"{PREFIX}{plan.name}_v{plan.version}_{interval}"


def product_id(plan_name: str) -> str:
    return f"{PREFIX}{plan_name}"


def parse_lookup_key(key: str | None) -> tuple[str, int, str] | None:
    """``(plan, version, interval)`` of a Tollgate price, or None for any other price."""
    match = _KEY.match(key or "")
    if match is None:
        return None
    return match["plan"], int(match["version"]), match["interval"]


def sellable(plan: PlanVersion) -> bool:
    """Bought through Checkout: self-serve and not free."""
    return plan.self_serve and bool(plan.monthly_price_cents)


def plan_price(plan: PlanVersion, interval: str) -> PlanPrice | None:
    if not sellable(plan):
        return None
    if interval == "month":
        return PlanPrice(plan, "month", int(plan.monthly_price_cents or 0))
    if interval == "year" and plan.annual_price_cents:
        return PlanPrice(plan, "year", int(plan.annual_price_cents))
    return None


def catalog_prices(catalog: Catalog) -> list[PlanPrice]:
    """Every price the catalog sells: each version of each self-serve paid plan, monthly and
    (where the version has one) annual. Older versions stay so grandfathered orgs can renew."""
    out: list[PlanPrice] = []
    for name in catalog.names():
        for version in catalog.plans[name]:
            for interval in ("month", "year"):
                price = plan_price(version, interval)
                if price is not None:
                    out.append(price)
    return out
