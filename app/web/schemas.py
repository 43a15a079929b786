"""API shapes of the billing page's sign-in links (msgspec Structs)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from msgspec import Struct


class BillingSession(Struct):
    """A single-use link that opens the org's billing page. Send the customer to ``url`` now: it
    works once and expires at ``expires_at`` (``web.link_ttl``, 5 minutes by default)."""

    organization_id: UUID
    url: str
    path: str
    """``url`` without the deployment's public origin."""
    expires_at: datetime
