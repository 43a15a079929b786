"""Quota operations as the API offers them: validation, the meter call, the answer."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from prometheus_client import Counter

from app.metering import schemas
from app.metering.errors import InvalidQuantity, UnknownCategory
from app.metering.headers import cap_retry, quota_headers
from app.metering.meter import Meter
from app.metering.results import Decision, Item
from app.plans import CATEGORIES
from app.settings import MeterSettings

_CATEGORIES = frozenset(CATEGORIES)
ITEMS = Counter("tollgate_quota_items", "Consumed items by category and outcome", ["category", "outcome"])
_OUTCOME = {
    (c, o): ITEMS.labels(c, o)
    for c in CATEGORIES
    for o in (
        "accepted",
        "usage_exceeded",
        "on_demand_exhausted",
        "spike_protection",
        "project_cap",
        "suspended",
        "unavailable",
    )
}


class QuotaService:
    def __init__(self, meter: Meter, settings: MeterSettings) -> None:
        self.meter = meter
        self.settings = settings

    def items(self, raw: Sequence[schemas.ItemIn], project: str | None) -> list[Item]:
        """Validate every item before anything is counted (an unknown category or an absurd
        quantity refuses the whole request)."""
        out = []
        for it in raw:
            if it.category not in _CATEGORIES:
                raise UnknownCategory(
                    f"Unknown category {it.category!r}; categories: {', '.join(CATEGORIES)}"
                )
            if it.quantity > self.settings.max_quantity:
                raise InvalidQuantity(
                    f"quantity {it.quantity} is above the maximum {self.settings.max_quantity}"
                )
            out.append(Item(it.category, it.quantity, it.project or project or ""))
        return out

    async def consume(self, req: schemas.ConsumeRequest) -> tuple[schemas.ConsumeResponse, dict[str, str]]:
        decision = await self.meter.consume(
            req.organization_id,
            self.items(req.items, req.project),
            idempotency_key=req.idempotency_key,
            allow_partial=req.allow_partial,
        )
        return self.response(decision), quota_headers([decision], self.settings.max_retry_after)

    async def consume_batch(
        self, req: schemas.ConsumeBatchRequest
    ) -> tuple[schemas.ConsumeBatchResponse, dict[str, str]]:
        prepared = [(r, self.items(r.items, r.project)) for r in req.requests]
        decisions = await self.meter.consume_batch(
            [(r.organization_id, items, r.idempotency_key, r.allow_partial) for r, items in prepared]
        )
        return (
            schemas.ConsumeBatchResponse([self.response(d) for d in decisions]),
            quota_headers(decisions, self.settings.max_retry_after),
        )

    def response(self, d: Decision) -> schemas.ConsumeResponse:
        for i in d.items:
            counter = _OUTCOME.get((i.category, "accepted" if i.accepted else i.reason or ""))
            if counter is not None:
                counter.inc()
        cap = self.settings.max_retry_after
        return schemas.ConsumeResponse(
            organization_id=d.organization_id,
            accepted=d.all_accepted,
            items=[
                schemas.ItemOut(
                    category=i.category,
                    quantity=i.quantity,
                    accepted=i.accepted,
                    granted=i.granted,
                    source=i.source,  # type: ignore[arg-type]
                    remaining=i.remaining,  # type: ignore[arg-type]
                    limit=i.limit,
                    period_end=d.period_end,
                    reason=i.reason,
                    retry_after=None if i.accepted else cap_retry(i.retry_after, cap),
                )
                for i in d.items
            ],
            period_start=d.period_start,
            period_end=d.period_end,
            degraded=d.degraded,
            replayed=d.replayed,
        )

    async def refund(self, req: schemas.RefundRequest) -> schemas.RefundResponse:
        result = await self.meter.refund(
            req.organization_id,
            self.items(req.items, req.project),
            period_start=req.period_start,
            idempotency_key=req.idempotency_key,
        )
        return schemas.RefundResponse(result.organization_id, result.period_start, result.refunded)

    async def lease(self, req: schemas.LeaseRequest) -> tuple[schemas.LeaseResponse, dict[str, str]]:
        lease_id = uuid.uuid4().hex
        item = self.items([schemas.ItemIn(req.category, req.quantity)], req.project)
        d = await self.meter.consume(req.organization_id, item, allow_partial=True, lease_id=lease_id)
        i = d.items[0]
        cap = self.settings.max_retry_after
        granted = i.granted if i.accepted else 0
        return schemas.LeaseResponse(
            lease_id=lease_id if granted and not d.degraded else None,
            organization_id=d.organization_id,
            category=i.category,
            granted=granted,
            remaining=i.remaining,
            limit=i.limit,
            period_start=d.period_start,
            period_end=d.period_end,
            reason=i.reason,
            retry_after=None if granted else cap_retry(i.retry_after, cap),
            degraded=d.degraded,
        ), quota_headers([d], cap)

    async def return_lease(self, lease_id: str, req: schemas.LeaseReturn) -> schemas.RefundResponse:
        result = await self.meter.return_lease(req.organization_id, lease_id, req.unused)
        return schemas.RefundResponse(result.organization_id, result.period_start, result.refunded)
