"""The one module that talks to Stripe (and the only importer of ``stripe``).

Thin async functions for exactly what billing needs. Every call that creates something carries an
idempotency key derived from the business operation (the caller passes it). Stripe's failures are
mapped to Tollgate errors here: unreachable, 429 and 5xx -> :class:`StripeUnavailable` (503); a
refused request -> a 4xx. Subscriptions come back as a small :class:`Subscription`, read from both
API shapes in :func:`normalize_subscription` (items carry ``price`` and the period in current API
versions; older payloads, such as localstripe's 2017-08-15 events, put ``plan`` and the period on
the subscription itself).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import stripe
import structlog

from app.billing.errors import (
    InvalidSignature,
    PaymentFailed,
    StripeIdempotencyConflict,
    StripeNotConfigured,
    StripeObjectMissing,
    StripeRequestRejected,
    StripeUnavailable,
)
from app.settings import StripeSettings

log = structlog.get_logger(__name__)

API_VERSION = "2026-10-28.endive"
"""The Stripe API version every request is made with (pinned: upgrade it deliberately)."""

T = TypeVar("T")


# ---------------------------------------------------------------------------- shapes
@dataclass(frozen=True, slots=True)
class Subscription:
    id: str
    customer: str
    status: str
    price_id: str | None
    lookup_key: str | None
    item_id: str | None
    current_period_start: datetime | None
    current_period_end: datetime | None
    cancel_at_period_end: bool
    organization_id: str | None
    """``metadata.organization_id``, set by Tollgate's checkout."""
    created: int


@dataclass(frozen=True, slots=True)
class Price:
    id: str
    lookup_key: str | None
    unit_amount: int | None
    currency: str
    interval: str | None
    product: str
    active: bool
    usage_type: str | None
    meter: str | None


@dataclass(frozen=True, slots=True)
class CheckoutSession:
    id: str
    url: str


def _ts(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value), UTC) if isinstance(value, int | float) and value else None


def _id(value: Any) -> str | None:
    """An expandable field: an id string or an object with an id."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        inner = value.get("id")
        return inner if isinstance(inner, str) else None
    return None


def normalize_subscription(data: Mapping[str, Any]) -> Subscription:
    """Both shapes, in one place: ``items.data[0].price`` + item periods (current API) or the
    top-level ``plan`` + subscription periods (2017-08-15, localstripe's events)."""
    items = (data.get("items") or {}).get("data") or []
    item: Mapping[str, Any] = items[0] if items else {}
    price = item.get("price") or item.get("plan") or data.get("plan") or {}
    price = price if isinstance(price, Mapping) else {"id": price}
    start = item.get("current_period_start") or data.get("current_period_start")
    end = item.get("current_period_end") or data.get("current_period_end")
    metadata = data.get("metadata") or {}
    org = metadata.get("organization_id")
    return Subscription(
        id=str(data["id"]),
        customer=_id(data.get("customer")) or "",
        status=str(data.get("status") or ""),
        price_id=_id(price),
        lookup_key=price.get("lookup_key") or None,
        item_id=_id(item) if item else None,
        current_period_start=_ts(start),
        current_period_end=_ts(end),
        cancel_at_period_end=bool(data.get("cancel_at_period_end")),
        organization_id=str(org) if org else None,
        created=int(data.get("created") or 0),
    )


def invoice_subscription_id(invoice: Mapping[str, Any]) -> str | None:
    """``invoice.subscription`` (older versions) or ``parent.subscription_details.subscription``."""
    parent = invoice.get("parent") or {}
    details = parent.get("subscription_details") or {} if isinstance(parent, Mapping) else {}
    return _id(invoice.get("subscription")) or _id(details.get("subscription"))


def _price(obj: Any) -> Price:
    data = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
    recurring = data.get("recurring") or {}
    return Price(
        id=data["id"],
        lookup_key=data.get("lookup_key"),
        unit_amount=data.get("unit_amount"),
        currency=str(data.get("currency") or ""),
        interval=recurring.get("interval"),
        product=_id(data.get("product")) or "",
        active=bool(data.get("active", True)),
        usage_type=recurring.get("usage_type"),
        meter=recurring.get("meter"),
    )


# ---------------------------------------------------------------------------- webhooks
def verify_webhook(
    payload: bytes, header: str | None, secrets: Sequence[str], tolerance: int, now: float
) -> None:
    """Check ``Stripe-Signature`` against the raw body with any of ``secrets`` (rotation), then
    the timestamp against ``now`` (Tollgate's clock). Raises :class:`InvalidSignature`."""
    if not header:
        raise InvalidSignature("The Stripe-Signature header is missing.")
    verified = False
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(payload, header, secret, tolerance=None)
        except (stripe.SignatureVerificationError, UnicodeDecodeError, ValueError):
            continue
        verified = True
        break
    if not verified:
        raise InvalidSignature
    timestamp = next(
        (int(v) for k, _, v in (p.partition("=") for p in header.split(",")) if k.strip() == "t"), 0
    )
    if timestamp < now - tolerance:
        raise InvalidSignature(
            f"The signature timestamp is more than {tolerance} s old; replays are refused."
        )


def sign_webhook(payload: bytes, secret: str, timestamp: int) -> str:
    """A ``Stripe-Signature`` header as Stripe computes it (for operators' tooling and tests)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, "sha256").hexdigest()
    return f"t={timestamp},v1={mac}"


# ---------------------------------------------------------------------------- the gateway
class StripeGateway:
    """Stripe, as billing uses it. One per process (it owns an HTTP connection pool)."""

    def __init__(self, settings: StripeSettings) -> None:
        self.settings = settings
        self._client: stripe.StripeClient | None = None

    @property
    def configured(self) -> bool:
        return self.settings.api_key is not None and bool(self.settings.api_key.get_secret_value())

    @property
    def client(self) -> stripe.StripeClient:
        if self._client is None:
            if not self.configured or self.settings.api_key is None:
                raise StripeNotConfigured
            base = {"api": self.settings.api_base} if self.settings.api_base else None
            self._client = stripe.StripeClient(
                self.settings.api_key.get_secret_value(),
                stripe_version=API_VERSION,
                base_addresses=base,  # type: ignore[arg-type]
                http_client=stripe.HTTPXClient(timeout=self.settings.timeout),
                max_network_retries=self.settings.max_network_retries,
            )
        return self._client

    async def _call(self, operation: str, call: Awaitable[T]) -> T:
        try:
            return await call
        except stripe.IdempotencyError as exc:
            log.warning("stripe.idempotency_conflict", operation=operation)
            raise StripeIdempotencyConflict from exc
        except stripe.CardError as exc:
            raise PaymentFailed from exc
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 404:
                raise StripeObjectMissing from exc
            log.warning("stripe.rejected", operation=operation, param=exc.param, code=exc.code)
            detail = f"Stripe refused the request (parameter {exc.param})." if exc.param else None
            raise StripeRequestRejected(detail) from exc
        except (stripe.AuthenticationError, stripe.PermissionError) as exc:
            log.error("stripe.auth_failed", operation=operation)
            raise StripeNotConfigured("Stripe refused Tollgate's API key.") from exc
        except stripe.StripeError as exc:  # connection errors, 429, 5xx
            log.warning(
                "stripe.unavailable",
                operation=operation,
                error=type(exc).__name__,
                status=getattr(exc, "http_status", None),
            )
            raise StripeUnavailable from exc

    @staticmethod
    def _opts(idempotency_key: str) -> Any:
        return {"idempotency_key": idempotency_key}

    # -- customers
    async def create_customer(self, organization_id: str, description: str, idempotency_key: str) -> str:
        params = {"description": description, "metadata": {"organization_id": organization_id}}
        customer = await self._call(
            "customers.create",
            self.client.v1.customers.create_async(params, self._opts(idempotency_key)),  # type: ignore[arg-type]
        )
        return str(customer.id)

    # -- catalog
    async def prices_by_lookup_keys(self, keys: Sequence[str]) -> dict[str, Price]:
        out: dict[str, Price] = {}
        for chunk in (keys[i : i + 10] for i in range(0, len(keys), 10)):
            page = await self._call(
                "prices.list",
                self.client.v1.prices.list_async({"lookup_keys": list(chunk), "limit": 100}),
            )
            for obj in page.data:
                price = _price(obj)
                if price.lookup_key:
                    out[price.lookup_key] = price
        return out

    async def ensure_product(
        self, product_id: str, name: str, metadata: dict[str, str], idempotency_key: str
    ) -> bool:
        """Create the product with this id unless it exists; True when created."""
        try:
            await self._call("products.retrieve", self.client.v1.products.retrieve_async(product_id))
            return False
        except StripeObjectMissing:
            pass
        params = {"id": product_id, "name": name, "metadata": metadata}
        await self._call(
            "products.create",
            self.client.v1.products.create_async(params, self._opts(idempotency_key)),  # type: ignore[arg-type]
        )
        return True

    async def create_price(self, params: dict[str, Any], idempotency_key: str) -> Price:
        obj = await self._call(
            "prices.create",
            self.client.v1.prices.create_async(params, self._opts(idempotency_key)),  # type: ignore[arg-type]
        )
        return _price(obj)

    async def archive_price(self, price_id: str) -> None:
        await self._call("prices.update", self.client.v1.prices.update_async(price_id, {"active": False}))

    async def meter_id(self, event_name: str) -> str | None:
        page = await self._call(
            "billing.meters.list",
            self.client.v1.billing.meters.list_async({"status": "active", "limit": 100}),
        )
        for meter in page.data:
            if meter.event_name == event_name:
                return str(meter.id)
        return None

    async def create_meter(self, event_name: str, display_name: str, idempotency_key: str) -> str:
        params = {
            "display_name": display_name,
            "event_name": event_name,
            "default_aggregation": {"formula": "sum"},
        }
        meter = await self._call(
            "billing.meters.create",
            self.client.v1.billing.meters.create_async(params, self._opts(idempotency_key)),  # type: ignore[arg-type]
        )
        return str(meter.id)

    # -- checkout and portal
    async def create_checkout_session(
        self,
        *,
        customer: str,
        price_id: str,
        organization_id: str,
        success_url: str,
        cancel_url: str,
        idempotency_key: str,
    ) -> CheckoutSession:
        params = {
            "mode": "subscription",
            "customer": customer,
            "client_reference_id": organization_id,
            "line_items": [{"price": price_id, "quantity": 1}],
            "success_url": success_url,
            "cancel_url": cancel_url,
            "metadata": {"organization_id": organization_id},
            "subscription_data": {"metadata": {"organization_id": organization_id}},
        }
        session = await self._call(
            "checkout.sessions.create",
            self.client.v1.checkout.sessions.create_async(params, self._opts(idempotency_key)),  # type: ignore[arg-type]
        )
        return CheckoutSession(id=str(session.id), url=str(session.url))

    async def create_portal_session(self, customer: str, return_url: str, idempotency_key: str) -> str:
        params = {"customer": customer, "return_url": return_url}
        session = await self._call(
            "billing_portal.sessions.create",
            self.client.v1.billing_portal.sessions.create_async(params, self._opts(idempotency_key)),  # type: ignore[arg-type]
        )
        return str(session.url)

    # -- subscriptions
    async def get_subscription(self, subscription_id: str) -> Subscription | None:
        """The subscription's state now; ``None`` if Stripe has no such subscription."""
        try:
            obj = await self._call(
                "subscriptions.retrieve", self.client.v1.subscriptions.retrieve_async(subscription_id)
            )
        except StripeObjectMissing:
            return None
        return normalize_subscription(obj.to_dict())

    async def change_subscription_price(
        self, subscription: Subscription, price_id: str, idempotency_key: str
    ) -> Subscription:
        """Swap the subscription's price in place, prorated (no second subscription)."""
        params = {
            "items": [{"id": subscription.item_id, "price": price_id}],
            "proration_behavior": "create_prorations",
            "payment_behavior": "error_if_incomplete",
        }
        obj = await self._call(
            "subscriptions.update",
            self.client.v1.subscriptions.update_async(
                subscription.id,
                params,  # type: ignore[arg-type]
                self._opts(idempotency_key),
            ),
        )
        return normalize_subscription(obj.to_dict())

    # -- usage
    async def report_meter_event(
        self, event_name: str, identifier: str, customer: str, value: int, timestamp: int
    ) -> bool:
        """Report ``value`` for ``customer``; False when Stripe already has this identifier (a
        retry of a report it accepted), which is success too."""
        params = {
            "event_name": event_name,
            "identifier": identifier,
            "timestamp": timestamp,
            "payload": {"stripe_customer_id": customer, "value": str(value)},
        }
        try:
            await self.client.v1.billing.meter_events.create_async(
                params,  # type: ignore[arg-type]
                self._opts(identifier),
            )
        except stripe.IdempotencyError:
            return False  # the key is the identifier: this report was made already
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 400 and "already exists" in str(exc.user_message or ""):
                return False
            await self._call("billing.meter_events.create", _reraise(exc))
        except stripe.StripeError as exc:
            await self._call("billing.meter_events.create", _reraise(exc))
        return True


async def _reraise(exc: BaseException) -> Any:
    raise exc


def gateway(ctx: Any) -> StripeGateway:
    """The process's gateway, kept on the AppContext (built on first use)."""
    if ctx.stripe is None:
        ctx.stripe = StripeGateway(ctx.settings.stripe)
    gw: StripeGateway = ctx.stripe
    return gw
