"""API shapes of the quota endpoints.

The consume shapes are ``gc=False``: a batch decodes and answers a thousand of each, and as tracked
objects they would drive the cyclic garbage collector's full passes (none of them can be in a cycle).
"""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta, Struct

Category = Annotated[str, Meta(min_length=1, max_length=40, pattern=r"^[a-z_]+$")]
Quantity = Annotated[int, Meta(ge=0, le=1_000_000_000_000)]
Project = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[^:|]+$")]
IdemKey = Annotated[str, Meta(min_length=1, max_length=200)]
OrgId = Annotated[str, Meta(min_length=1, max_length=64)]


class ItemIn(Struct, forbid_unknown_fields=True, gc=False):
    category: Category
    quantity: Quantity = 1
    project: Project | None = None
    """Overrides the request's project for this item."""


class ConsumeRequest(Struct, forbid_unknown_fields=True, gc=False):
    organization_id: OrgId
    items: Annotated[list[ItemIn], Meta(min_length=1, max_length=1000)]
    project: Project | None = None
    idempotency_key: IdemKey | None = None
    allow_partial: bool = False


class ConsumeBatchRequest(Struct, forbid_unknown_fields=True, gc=False):
    requests: Annotated[list[ConsumeRequest], Meta(min_length=1, max_length=1000)]


class ItemOut(Struct, omit_defaults=True, gc=False):
    category: str
    quantity: int
    accepted: bool
    granted: int
    source: Literal["allowance", "on_demand"] | None
    remaining: int | None
    """Allowance left in the period after this item; null is unlimited."""
    limit: int | None
    period_end: int
    reason: str | None = None
    retry_after: int | None = None


class ConsumeResponse(Struct, omit_defaults=True, gc=False):
    organization_id: str
    accepted: bool
    """True when every item was accepted in full."""
    items: list[ItemOut]
    period_start: int
    """Unix seconds; name it in a refund so the refund lands in this period."""
    period_end: int
    degraded: bool = False
    replayed: bool = False


class ConsumeBatchResponse(Struct, gc=False):
    results: list[ConsumeResponse]


class RefundRequest(Struct, forbid_unknown_fields=True):
    organization_id: OrgId
    items: Annotated[list[ItemIn], Meta(min_length=1, max_length=1000)]
    period_start: Annotated[int, Meta(ge=0)] | None = None
    """The ``period_start`` of the consume being refunded; the current period when left out."""
    project: Project | None = None
    idempotency_key: IdemKey | None = None


class RefundResponse(Struct):
    organization_id: str
    period_start: int
    refunded: dict[str, int]


class LeaseRequest(Struct, forbid_unknown_fields=True):
    organization_id: OrgId
    category: Category
    quantity: Annotated[int, Meta(ge=1, le=1_000_000_000_000)]
    project: Project | None = None


class LeaseResponse(Struct, omit_defaults=True):
    lease_id: str | None
    organization_id: str
    category: str
    granted: int
    remaining: int | None
    limit: int | None
    period_start: int
    period_end: int
    reason: str | None = None
    retry_after: int | None = None
    degraded: bool = False


class LeaseReturn(Struct, forbid_unknown_fields=True):
    organization_id: OrgId
    unused: Annotated[int, Meta(ge=0, le=1_000_000_000_000)]


class CategoryUsage(Struct):
    category: str
    unit: str
    used: int
    limit: int | None
    remaining: int | None
    on_demand_used: int
    on_demand_cents: float
    refunded: int
    refused: dict[str, int]


class UsageResponse(Struct):
    organization_id: str
    period_start: int
    period_end: int
    on_demand_budget_cents: int
    on_demand_spent_cents: float
    categories: list[CategoryUsage]
