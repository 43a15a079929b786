"""API shapes of entitlements, seats and trials (msgspec Structs)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from msgspec import Meta, Struct

FeatureName = Annotated[str, Meta(min_length=1, max_length=64)]
PlanName = Annotated[str, Meta(min_length=1, max_length=50)]
MemberId = Annotated[str, Meta(min_length=1, max_length=200)]
IdemKey = Annotated[str, Meta(min_length=1, max_length=200)]


# ---------------------------------------------------------------------------- read
class FeatureState(Struct):
    enabled: bool
    upgrade_to: str | None
    """When not enabled: the cheapest self-serve plan above the current one that has it (null:
    no self-serve plan does; talk to sales)."""


class Limit(Struct):
    value: int | None
    """Null is unlimited."""
    unit: str


class MembersLimit(Struct):
    value: int | None
    """Null is unlimited."""
    unit: str
    used: int
    """How many members the product has reported (``POST .../seats``)."""
    over_limit: bool
    """More members than the limit (after a downgrade): existing members stay, new ones are refused."""
    upgrade_to: str | None
    """At or over the limit: the cheapest self-serve plan above the current one with room for one more."""


class Limits(Struct):
    members: MembersLimit
    retention_days: Limit


class TrialState(Struct):
    plan: str
    version: int
    started_at: datetime | None
    ends_at: datetime
    returns_to: str
    """The plan the organization returns to when the trial ends (unless it buys one)."""


class Entitlements(Struct):
    organization_id: UUID
    plan: str
    """The plan whose entitlements apply now (the trial's while a trial runs)."""
    version: int
    status: str
    features: dict[str, FeatureState]
    limits: Limits
    trial: TrialState | None
    notices: list[str]
    """Facts the product may want to show, e.g. more members than the plan allows."""


# ---------------------------------------------------------------------------- check
class CheckRequest(Struct, forbid_unknown_fields=True):
    organization_id: UUID
    feature: FeatureName


class CheckResult(Struct):
    allowed: bool
    reason: Literal["entitled", "not_entitled", "suspended"]
    upgrade_to: str | None
    """When not allowed: the cheapest self-serve plan above the current one with the feature."""


# ---------------------------------------------------------------------------- seats
class SeatChange(Struct, forbid_unknown_fields=True):
    member_id: MemberId
    action: Literal["join", "leave"]
    idempotency_key: IdemKey | None = None
    """A retried request with the same key returns the first answer without counting again."""


class SeatResult(Struct):
    organization_id: UUID
    member_id: str
    action: str
    changed: bool
    """False when the member was already in (join) or already out (leave)."""
    used: int
    limit: int | None
    replayed: bool = False


# ---------------------------------------------------------------------------- trials
class TrialStart(Struct, forbid_unknown_fields=True):
    plan: PlanName
    days: Annotated[int, Meta(ge=1, le=366)] | None = None
    """Defaults to ``entitlements.trial_days`` (14)."""


class Trial(Struct):
    organization_id: UUID
    plan: str
    version: int
    started_at: datetime
    ends_at: datetime
    returns_to: str
