"""What a running Tollgate holds: built once in ``create_app`` and handed to services."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.services import Authenticator
from app.clock import Clock
from app.metering.meter import Meter
from app.plans import Catalog
from app.settings import Settings


@dataclass
class AppContext:
    settings: Settings
    catalog: Catalog
    clock: Clock
    sessions: async_sessionmaker[AsyncSession]
    redis: Any
    meter: Meter
    auth: Authenticator
    queue: Any = None
    """The SAQ queue: ``await ctx.queue.enqueue("module.fn", key=..., retries=..., **kwargs)``."""
    pending_publish: set[str] = field(default_factory=set)
    """Orgs whose config could not be pushed to Redis; retried by the background loop."""
    stripe: Any = None
    """The Stripe gateway (``app.billing.stripe_client.StripeGateway``), built on first use."""
