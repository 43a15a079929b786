"""API shapes of webhook endpoints and deliveries (msgspec Structs)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from msgspec import Meta, Struct

EndpointUrl = Annotated[str, Meta(min_length=8, max_length=2000)]
EventType = Annotated[str, Meta(min_length=1, max_length=60)]


class WebhookEndpointCreate(Struct, forbid_unknown_fields=True):
    """``organization_id`` scopes the endpoint to one org (an org key can only register for its
    own org); without it (admin only) the endpoint receives every org's events."""

    url: EndpointUrl
    events: Annotated[list[EventType], Meta(max_length=50)] | None = None
    """Event types to receive; left out or empty means all."""
    organization_id: UUID | None = None
    description: Annotated[str, Meta(max_length=200)] = ""


class WebhookEndpoint(Struct):
    id: UUID
    url: str
    events: list[str]
    organization_id: UUID | None
    description: str
    secret_prefix: str
    enabled: bool
    disabled_at: datetime | None
    disabled_reason: str | None
    failing_since: datetime | None
    created_at: datetime


class WebhookEndpointCreated(Struct):
    id: UUID
    url: str
    events: list[str]
    organization_id: UUID | None
    description: str
    secret_prefix: str
    enabled: bool
    created_at: datetime
    secret: str
    """The ``whsec_`` signing secret. Shown once; store it now."""


class WebhookEndpointPage(Struct):
    items: list[WebhookEndpoint]
    total: int


class SecretRotated(Struct):
    id: UUID
    secret_prefix: str
    secret: str
    """The new signing secret; the old one stops signing at once. Shown once."""


class Delivery(Struct):
    id: UUID
    event_id: UUID
    webhook_id: str
    """The ``webhook-id`` header value (the same on every retry)."""
    type: str
    organization_id: UUID | None
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime


class DeliveryPage(Struct):
    items: list[Delivery]
    total: int
