"""API shapes of billing (msgspec Structs)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from msgspec import Meta, Struct

from app.orgs.schemas import PlanName

RedirectUrl = Annotated[str, Meta(min_length=8, max_length=2000, pattern=r"^https?://[^\s]+$")]


class CheckoutCreate(Struct, forbid_unknown_fields=True):
    plan: PlanName
    interval: Literal["month", "year"] = "month"
    success_url: RedirectUrl | None = None
    cancel_url: RedirectUrl | None = None


class Checkout(Struct):
    """``mode="checkout"``: send the customer to ``url``. ``mode="updated"``: the org's existing
    subscription was changed in place (prorated); ``url`` and ``session_id`` are null and the new
    plan is already in effect."""

    mode: Literal["checkout", "updated"]
    url: str | None
    session_id: str | None
    plan: str
    interval: str
    subscription_id: str | None = None


class PortalCreate(Struct, forbid_unknown_fields=True):
    return_url: RedirectUrl | None = None


class Portal(Struct):
    url: str


class BillingStatus(Struct):
    """What Stripe billing knows about an org (the billing page's data)."""

    organization_id: UUID
    plan: str
    billing_source: str
    status: str
    has_customer: bool
    subscription_id: str | None
    subscription_status: str | None
    interval: str | None
    cancel_at_period_end: bool
    current_period_end: datetime | None
    dunning_state: str | None
    """``grace`` (past due, plan kept), ``downgraded`` or ``suspended``; null when in good standing."""
    grace_ends_at: datetime | None


class WebhookReceipt(Struct):
    received: bool
    event_id: str
    duplicate: bool


class SyncItem(Struct):
    kind: Literal["product", "price", "meter"]
    key: str
    action: Literal["created", "updated", "unchanged"]
    stripe_id: str | None = None


class SyncReport(Struct):
    items: list[SyncItem]

    @property
    def changed(self) -> int:
        return sum(1 for i in self.items if i.action != "unchanged")
