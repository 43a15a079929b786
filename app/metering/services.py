"""Quota operations as the API offers them: validation, the meter call, the answer."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

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
        # The cost per event is what matters here (a batch is 1,000 requests of usually one item,
        # over few orgs): one pass to validate and build the items, one to answer, counters bumped
        # once per batch. Items are frozen, and a batch repeats few distinct ones: each is
        # validated and built once (the first invalid item in request order still refuses the
        # batch, as :meth:`items` does), and identical requests share one (frozen) tuple, which
        # also keeps a thousand short-lived containers away from the garbage collector.
        max_quantity = self.settings.max_quantity
        known: dict[tuple[str, int, str], Item] = {}
        same: dict[tuple[Any, ...], tuple[str, tuple[Item, ...], str | None, bool]] = {}
        prepared: list[tuple[str, tuple[Item, ...], str | None, bool]] = []
        for r in req.requests:
            project = r.project or ""
            keys = tuple((it.category, it.quantity, it.project or project) for it in r.items)
            request_key = (r.organization_id, keys, r.idempotency_key, r.allow_partial)
            prepared_request = same.get(request_key)
            if prepared_request is None:
                items = []
                for key in keys:
                    item = known.get(key)
                    if item is None:
                        category, quantity, _ = key
                        if category not in _CATEGORIES:
                            raise UnknownCategory(
                                f"Unknown category {category!r}; categories: {', '.join(CATEGORIES)}"
                            )
                        if quantity > max_quantity:
                            raise InvalidQuantity(f"quantity {quantity} is above the maximum {max_quantity}")
                        item = known[key] = Item(*key)
                    items.append(item)
                prepared_request = same[request_key] = (
                    r.organization_id,
                    tuple(items),
                    r.idempotency_key,
                    r.allow_partial,
                )
            prepared.append(prepared_request)
        decisions = await self.meter.consume_batch(prepared)
        return self._batch_answer(decisions)

    def _batch_answer(self, decisions: list[Decision]) -> tuple[schemas.ConsumeBatchResponse, dict[str, str]]:
        """What :meth:`response` and :func:`quota_headers` answer for each decision, in one pass."""
        cap = self.settings.max_retry_after
        item_out, response = schemas.ItemOut, schemas.ConsumeResponse
        outcomes: dict[tuple[str, str], int] = {}
        results = []
        headers_needed = False
        for d in decisions:
            period_end = d.period_end
            items = []
            accepted = True
            for i in d.items:
                if i.accepted:
                    outcome, retry = "accepted", None
                else:
                    accepted = False
                    outcome, retry = i.reason or "", cap_retry(i.retry_after, cap)
                key = (i.category, outcome)
                outcomes[key] = outcomes.get(key, 0) + 1
                items.append(
                    item_out(
                        i.category,
                        i.quantity,
                        i.accepted,
                        i.granted,
                        i.source,  # type: ignore[arg-type]
                        i.remaining,
                        i.limit,
                        period_end,
                        i.reason,
                        retry,
                    )
                )
            if not accepted or d.exhausted or d.degraded:
                headers_needed = True
            results.append(
                response(
                    d.organization_id, accepted, items, d.period_start, period_end, d.degraded, d.replayed
                )
            )
        for key, n in outcomes.items():
            counter = _OUTCOME.get(key)
            if counter is not None:
                counter.inc(n)
        headers = quota_headers(decisions, cap) if headers_needed else {}
        return schemas.ConsumeBatchResponse(results), headers

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
