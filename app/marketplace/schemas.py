"""Marketplace shapes: what Heroku sends and gets, and the operator's view.

Heroku's request bodies MAY carry undocumented fields and such requests are valid (partner API v3),
so these inputs deliberately do *not* set ``forbid_unknown_fields`` -- the one exception to the house
rule, required by the contract.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from msgspec import Meta, Struct

ExternalId = Annotated[str, Meta(min_length=1, max_length=100)]
PlanSlug = Annotated[str, Meta(min_length=1, max_length=100)]
ShortText = Annotated[str, Meta(max_length=500)]


class HerokuOAuthGrant(Struct):
    code: Annotated[str, Meta(min_length=1, max_length=500)]
    expires_at: ShortText | None = None
    type: ShortText | None = None


class HerokuProvision(Struct):
    """``POST {base_url}``: the v3 body (and the legacy v1 fields, accepted and ignored)."""

    uuid: ExternalId
    plan: PlanSlug
    region: ShortText | None = None
    name: Annotated[str, Meta(max_length=200)] | None = None
    callback_url: ShortText | None = None
    oauth_grant: HerokuOAuthGrant | None = None
    options: dict[str, Any] | None = None
    log_input_url: Annotated[str, Meta(max_length=2000)] | None = None
    log_drain_token: ShortText | None = None
    heroku_id: ShortText | None = None


class HerokuPlanChange(Struct):
    """``PUT {base_url}/{id}``: at least ``plan``; kensa also sends ``heroku_id`` and ``uuid``."""

    plan: PlanSlug
    uuid: ShortText | None = None
    heroku_id: ShortText | None = None


class HerokuProvisioned(Struct):
    id: str
    config: dict[str, str]
    message: str


class HerokuProvisioning(Struct):
    id: str
    message: str


class HerokuPlanChanged(Struct):
    config: dict[str, str]
    message: str


class MarketplaceResource(Struct):
    """An add-on resource as an operator sees it (no secrets)."""

    id: UUID
    provider: str
    external_id: str
    plan: str
    region: str | None
    name: str | None
    state: str
    organization_id: UUID | None
    callback_url: str | None
    has_oauth_token: bool
    provisioned_at: datetime | None
    deprovisioned_at: datetime | None
    created_at: datetime
    updated_at: datetime


class MarketplaceRequest(Struct):
    """One inbox entry: what a marketplace asked (or a worker step), when, and what we answered."""

    id: UUID
    provider: str
    action: str
    dedupe_key: str
    external_id: str | None
    payload: dict[str, Any]
    received_at: datetime
    last_received_at: datetime
    deliveries: int
    status_code: int | None
    result: dict[str, Any]


class MarketplaceRequestPage(Struct):
    items: list[MarketplaceRequest]
    total: int


class MarketplaceResourcePage(Struct):
    items: list[MarketplaceResource]
    total: int
