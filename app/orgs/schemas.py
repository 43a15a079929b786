"""API shapes for organizations and keys (msgspec Structs, like every DTO in the API)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from msgspec import Meta, Struct

Name = Annotated[str, Meta(min_length=1, max_length=200)]
Slug = Annotated[str, Meta(min_length=2, max_length=63, pattern=r"^[a-z0-9][a-z0-9-]*[a-z0-9]$")]
PlanName = Annotated[str, Meta(min_length=1, max_length=50)]
Cents = Annotated[int, Meta(ge=0, le=100_000_000_000)]
ProjectCaps = dict[
    Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[^:|]+$")],
    dict[str, Annotated[int, Meta(ge=0)]],
]


class Period(Struct):
    start: datetime
    end: datetime


class OrganizationCreate(Struct, forbid_unknown_fields=True):
    name: Name
    slug: Slug | None = None
    plan: PlanName | None = None


class OrganizationUpdate(Struct, forbid_unknown_fields=True):
    """Fields left out are unchanged. ``overrides`` replaces the whole overrides object."""

    name: Name | msgspec.UnsetType = msgspec.UNSET
    overrides: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    on_demand_budget_cents: Cents | msgspec.UnsetType = msgspec.UNSET
    spike_protection: bool | msgspec.UnsetType | None = msgspec.UNSET
    project_caps: ProjectCaps | msgspec.UnsetType = msgspec.UNSET


class PlanChange(Struct, forbid_unknown_fields=True):
    plan: PlanName
    version: Annotated[int, Meta(ge=1)] | None = None


class Organization(Struct):
    id: UUID
    name: str
    slug: str
    plan: str
    plan_version: int
    status: str
    billing_source: str
    current_period: Period
    quotas: dict[str, int | None]
    on_demand_budget_cents: int
    spike_protection: bool
    spike_paused_until: datetime | None
    overrides: dict[str, Any]
    project_caps: dict[str, dict[str, int]]
    created_at: datetime


class OrganizationPage(Struct):
    items: list[Organization]
    total: int
    limit: int
    offset: int


class ApiKeyCreate(Struct, forbid_unknown_fields=True):
    name: Annotated[str, Meta(min_length=1, max_length=100)] = "default"


class ApiKey(Struct):
    id: UUID
    name: str
    prefix: str
    created_at: datetime


class ApiKeyCreated(Struct):
    id: UUID
    name: str
    prefix: str
    created_at: datetime
    secret: str
    """Shown once; store it now."""


class AuditEntry(Struct):
    id: UUID
    kind: str
    actor: str
    detail: dict[str, Any]
    created_at: datetime


class AuditPage(Struct):
    items: list[AuditEntry]
    total: int


class SpikePause(Struct, forbid_unknown_fields=True):
    """Suspend spike protection for a planned load window (ends by itself)."""

    minutes: Annotated[int, Meta(ge=1, le=7 * 24 * 60)]


class ServiceTokenCreate(Struct, forbid_unknown_fields=True):
    name: Annotated[str, Meta(min_length=1, max_length=100)]
    scope: Literal["admin", "ingest"]


class ServiceToken(Struct):
    id: UUID
    name: str
    scope: str
    prefix: str
    created_at: datetime


class ServiceTokenCreated(Struct):
    id: UUID
    name: str
    scope: str
    prefix: str
    created_at: datetime
    secret: str
