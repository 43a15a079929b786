"""All ORM models, imported here so Alembic and the app see one metadata."""

from advanced_alchemy.base import orm_registry

from app.db.models.audit import AuditEvent
from app.db.models.billing import BillingAccount, OverageReport, StripeEvent
from app.db.models.entitlements import Seat, Trial
from app.db.models.marketplace import MarketplaceRequest, MarketplaceResource
from app.db.models.notification import NotificationDelivery, NotificationEvent, WebhookEndpoint
from app.db.models.organization import ApiKey, Organization
from app.db.models.service_token import ServiceToken
from app.db.models.usage import Usage
from app.db.models.usage_daily import UsageDaily

metadata = orm_registry.metadata

__all__ = [
    "ApiKey",
    "AuditEvent",
    "BillingAccount",
    "MarketplaceRequest",
    "MarketplaceResource",
    "NotificationDelivery",
    "NotificationEvent",
    "Organization",
    "OverageReport",
    "Seat",
    "ServiceToken",
    "StripeEvent",
    "Trial",
    "Usage",
    "UsageDaily",
    "WebhookEndpoint",
    "metadata",
]
