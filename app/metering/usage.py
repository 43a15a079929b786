"""The usage read: per category used / limit / on-demand / refused, for the current period."""

from __future__ import annotations

from app.metering.meter import Meter
from app.metering.schemas import CategoryUsage, UsageResponse
from app.metering.store import parse_counters
from app.plans.catalog import UNITS


async def read_usage(meter: Meter, organization_id: str) -> UsageResponse:
    await meter.flush_refusals()
    cfg, fields = await meter.counters(organization_id)
    period = int(cfg["ps"])
    prices = cfg["odp"]
    counters = parse_counters(fields)
    categories = []
    spent = 0.0
    for cat in cfg["c"]:
        c = counters.get((cat, period), {"used": 0, "on_demand_used": 0, "refunded": 0, "refused": {}})
        limit = int(cfg["l"][cat])
        price = float(prices.get(cat, 0))
        od_cents = c["on_demand_used"] * price
        spent += od_cents
        allowance_used = c["used"] - c["on_demand_used"]
        categories.append(
            CategoryUsage(
                category=cat,
                unit=UNITS.get(cat, "event"),
                used=c["used"],
                limit=None if limit < 0 else limit,
                remaining=None if limit < 0 else max(0, limit - allowance_used),
                on_demand_used=c["on_demand_used"],
                on_demand_cents=round(od_cents, 4),
                refunded=c["refunded"],
                refused=dict(c["refused"]),
            )
        )
    return UsageResponse(
        organization_id=organization_id,
        period_start=period,
        period_end=int(cfg["pe"]),
        on_demand_budget_cents=int(cfg["odb"]),
        on_demand_spent_cents=round(spent, 4),
        categories=categories,
    )
