"""Fake Stripe for tests: localstripe plus the smallest stand-ins for what it lacks.

Run ``python -m tests.harness.fake_stripe --port N`` (binds 127.0.0.1), or, from a test, use
:class:`FakeStripe`, which spawns that subprocess on a free port and talks to it with httpx.

Faithful (localstripe's own code, untouched): customers, products, plans, payment methods,
subscriptions, invoices, invoice items, events, and webhook delivery signed exactly like Stripe
(``Stripe-Signature: t=<event.created>,v1=<hmac-sha256>``, posted about 1 s after the event).

Stand-ins added here (their objects live in localstripe's store, so a reset wipes them too):

- Idempotency-Key on ``POST /v1/*``: a repeat with the same key, path and body replays the first
  successful response (status and body, plus ``Idempotent-Replayed: true``); the same key with
  another path or body is a 400 ``idempotency_error``. Errors are not stored, so a retry re-runs.
- Prices ``/v1/prices``: create, retrieve, update, list (``lookup_keys``, ``active``, ``product``,
  ``type``). A lookup key is unique unless ``transfer_lookup_key`` moves it. A recurring price is
  mirrored as a localstripe Plan with the same id, and ``POST /v1/subscriptions[/{id}]`` accepts
  ``items[N][price]`` (rewritten to ``items[N][plan]``).
- Subscription items, wherever they appear (responses, events, webhooks), gain the modern fields
  ``price``, ``current_period_start`` and ``current_period_end``; the 2017 fields (``plan``, and the
  period on the subscription itself) stay.
- Subscription updates emit ``customer.subscription.updated`` with ``previous_attributes``, and paid
  invoices also emit ``invoice.paid`` (localstripe emits neither). On update, ``proration_behavior``
  and ``payment_behavior`` are accepted and ignored (localstripe always adds an "Unused time"
  proration item on a price change).
- Checkout Sessions, ``mode=subscription`` with one line item: create (parameters checked, unknown
  ones rejected as Stripe does), retrieve, expire. ``POST /_harness/checkout/{id}/complete`` (or a
  GET of the session's ``url``) pays it: a 4242 card becomes the customer's default payment method,
  the subscription is created through localstripe with ``subscription_data[metadata]``, and
  ``checkout.session.completed`` goes out through localstripe's Event and webhook path. Without a
  ``customer``, one is created on completion, as Checkout does.
- Billing portal sessions: create (the customer must exist); the ``url`` redirects to
  ``return_url``.
- Billing meters (create, list, retrieve; one active meter per ``event_name``) and v1 meter events:
  required params and the timestamp window are checked at once, and a repeated ``identifier``
  within 24 h is a 400 with ``Stripe-Should-Retry: false``, like Stripe. Not emulated: aggregation,
  and the checks Stripe makes later (meter and customer exist). ``GET /_harness/meter_events``
  lists what was recorded.
- ``POST /_harness/fail`` ``{status, count}``: the next ``count`` ``/v1/*`` requests answer
  ``status`` with a Stripe-shaped error. ``POST /_harness/reset`` wipes localstripe's store and the
  harness state; with ``webhooks=true`` also the webhook registrations.

localstripe quirks that billing code and its tests must expect:

- Events carry ``api_version: "2017-08-15"``; the client's ``Stripe-Version`` header is ignored.
- A subscription has exactly one item; changing its price replaces the item (a new ``si_`` id).
- ``current_period_end`` is the start plus one interval and never advances (no test clocks).
- Events are listed oldest first. Webhooks are delivered once, not retried, in no set order, and
  those already scheduled still go out after a reset.
- The store is kept in memory only (localstripe would pickle it to a shared /tmp file).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

import httpx
import stripe
from aiohttp import web

with warnings.catch_warnings():  # localstripe registers plain-function handlers
    warnings.simplefilter("ignore", DeprecationWarning)
    from localstripe import server as ls
from localstripe import webhooks as ls_webhooks
from localstripe.errors import UserError
from localstripe.resources import (
    Customer,
    Event,
    Invoice,
    List,
    PaymentMethod,
    Plan,
    Product,
    StripeObject,
    Subscription,
    SubscriptionItem,
    store,
    try_convert_to_bool,
    try_convert_to_int,
)
from localstripe.webhooks import schedule_webhook

_BASE_URL = "http://127.0.0.1"  # set by build_app(); used in session urls
_IDEMPOTENCY: dict[str, tuple[tuple[str, bytes], int, bytes]] = {}
_FAULT = {"status": 503, "remaining": 0}
_DAY = 24 * 3600


# --- Stripe-shaped errors and parameter checks ----------------------------------------------


def _error(message: str, param: str | None = None, code: str | None = None, status: int = 400):
    """An ``invalid_request_error``; raise it and localstripe's middleware renders it."""
    return UserError(status, message, {k: v for k, v in (("param", param), ("code", code)) if v})


class _NoRetryError(UserError):
    """A UserError that also tells the client not to retry (Stripe-Should-Retry: false)."""

    def to_response(self) -> web.Response:
        response = super().to_response()
        response.headers["Stripe-Should-Retry"] = "false"
        return response


def _check_known(params: dict[str, Any], allowed: set[str], prefix: str = "") -> None:
    for name in params:
        if name not in allowed:
            full = f"{prefix}[{name}]" if prefix else name
            raise _error(f"Received unknown parameter: {full}", full)


def _require(value: Any, param: str) -> Any:
    if value is None or value == "":
        raise _error(f"Missing required param: {param}.", param)
    return value


def _int(value: Any, param: str, minimum: int = 0) -> int:
    number = try_convert_to_int(value)
    if type(number) is not int or number < minimum:
        raise _error(f"Invalid integer: {value}", param)
    return number


def _lookup(cls: type, obj_id: Any, param: str, status: int = 400) -> Any:
    obj = store.get(f"{cls.object}:{obj_id}") if isinstance(obj_id, str) else None
    if obj is None:
        raise _error(f"No such {cls.object}: '{obj_id}'", param, "resource_missing", status)
    return obj


def _all(cls: type) -> list[Any]:
    return [obj for key, obj in store.items() if key.startswith(f"{cls.object}:")]


class _HarnessObject(StripeObject):
    @classmethod
    def _api_retrieve(cls, id):  # Stripe's 404 body, with code resource_missing
        return _lookup(cls, id, "id", 404)


# --- Prices ---------------------------------------------------------------------------------


def _price_with_lookup_key(lookup_key: Any) -> Price | None:
    return next((p for p in _all(Price) if lookup_key and p.lookup_key == lookup_key), None)


def _claim_lookup_key(price_id: str | None, lookup_key: Any, transfer: Any) -> Price | None:
    """The price holding ``lookup_key`` if it may be transferred; a 400 if it may not."""
    holder = _price_with_lookup_key(lookup_key)
    if holder is not None and holder.id != price_id and try_convert_to_bool(transfer) is not True:
        raise _error(f"A price (`{holder.id}`) already uses that lookup key.", "lookup_key")
    return holder


class Price(_HarnessObject):
    """A Price; a recurring one is mirrored as a localstripe Plan with the same id."""

    object = "price"
    _id_prefix = "price_"

    def __init__(
        self,
        currency=None,
        unit_amount=None,
        product=None,
        product_data=None,
        recurring=None,
        lookup_key=None,
        transfer_lookup_key=None,
        metadata=None,
        nickname=None,
        active=True,
        **unknown,
    ):
        _check_known(unknown, set())
        _require(currency, "currency")
        unit_amount = _int(_require(unit_amount, "unit_amount"), "unit_amount")
        if product is None and product_data is None:
            raise _error(
                "You must specify either `product` or `product_data` when creating a price.",
                "product",
            )
        if product is not None:
            _lookup(Product, product, "product")
        if recurring is not None:
            _check_known(recurring, {"interval", "interval_count", "usage_type", "meter"}, "recurring")
            if recurring.get("interval") not in ("day", "week", "month", "year"):
                raise _error(
                    "Invalid recurring[interval]: must be one of day, week, month, or year",
                    "recurring[interval]",
                )
            recurring = {
                "interval": recurring["interval"],
                "interval_count": _int(recurring.get("interval_count", 1), "recurring[interval_count]", 1),
                "usage_type": recurring.get("usage_type", "licensed"),
                "meter": recurring.get("meter"),
                "aggregate_usage": None,
                "trial_period_days": None,
            }
            if recurring["usage_type"] not in ("licensed", "metered"):
                raise _error("Invalid recurring[usage_type]", "recurring[usage_type]")
        holder = _claim_lookup_key(None, lookup_key, transfer_lookup_key)
        if product_data is not None:
            product = Product(**product_data).id  # localstripe validates product_data

        # All exceptions must be raised before this point (localstripe's convention).
        super().__init__()
        if holder is not None:
            holder.lookup_key = None
        self.active = try_convert_to_bool(active) is not False
        self.billing_scheme = "per_unit"
        self.currency = currency
        self.lookup_key = lookup_key or None
        self.metadata = dict(metadata or {})
        self.nickname = nickname
        self.product = product
        self.recurring = recurring
        self.tax_behavior = "unspecified"
        self.type = "one_time" if recurring is None else "recurring"
        self.unit_amount = unit_amount
        self.unit_amount_decimal = str(unit_amount)
        if recurring is not None:
            Plan(
                id=self.id,
                product=product,
                amount=unit_amount,
                currency=currency,
                interval=recurring["interval"],
                interval_count=recurring["interval_count"],
                usage_type=recurring["usage_type"],
                nickname=nickname,
                metadata=dict(self.metadata),
                active=self.active,
            )
        schedule_webhook(Event("price.created", self))

    @classmethod
    def _api_update(
        cls,
        id,
        active=None,
        metadata=None,
        nickname=None,
        lookup_key=None,
        transfer_lookup_key=None,
        **unknown,
    ):
        price = cls._api_retrieve(id)
        _check_known(unknown, set())
        if lookup_key is not None:  # "" clears the key
            holder = _claim_lookup_key(price.id, lookup_key, transfer_lookup_key)
            if holder is not None:
                holder.lookup_key = None
            price.lookup_key = lookup_key or None
        if active is not None:
            price.active = try_convert_to_bool(active) is True
        if nickname is not None:
            price.nickname = nickname or None
        for key, value in (metadata or {}).items():  # "" unsets a key, as in Stripe
            if value == "":
                price.metadata.pop(key, None)
            else:
                price.metadata[key] = value
        plan = store.get(f"plan:{price.id}")
        if plan is not None:
            plan.active, plan.nickname = price.active, price.nickname
            plan.metadata = dict(price.metadata)
        schedule_webhook(Event("price.updated", price))
        return price

    @classmethod
    def _api_list_all(
        cls,
        url,
        lookup_keys=None,
        active=None,
        product=None,
        type=None,
        limit=None,
        starting_after=None,
        **unknown,
    ):
        _check_known(unknown, set())
        if isinstance(lookup_keys, str):
            lookup_keys = [lookup_keys]
        active = try_convert_to_bool(active)
        result = List(url, limit=limit, starting_after=starting_after)
        result._list = [
            p
            for p in _all(cls)
            if (lookup_keys is None or p.lookup_key in lookup_keys)
            and (active is None or p.active == active)
            and (product is None or p.product == product)
            and (type is None or p.type == type)
        ]
        return result


def _plan_as_price(plan: Plan) -> dict[str, Any]:
    """How Stripe shows a legacy plan (created with /v1/plans) as a price."""
    return {
        "id": plan.id,
        "object": "price",
        "active": plan.active,
        "billing_scheme": "per_unit",
        "created": plan.created,
        "currency": plan.currency,
        "livemode": False,
        "lookup_key": None,
        "metadata": dict(plan.metadata),
        "nickname": plan.nickname,
        "product": plan.product,
        "recurring": {
            "interval": plan.interval,
            "interval_count": plan.interval_count,
            "usage_type": plan.usage_type,
            "meter": None,
            "aggregate_usage": None,
            "trial_period_days": plan.trial_period_days,
        },
        "tax_behavior": "unspecified",
        "type": "recurring",
        "unit_amount": plan.amount,
        "unit_amount_decimal": str(plan.amount),
    }


def _plan_for_price(price_id: Any, param: str) -> str:
    if isinstance(price_id, str) and store.get(f"plan:{price_id}") is not None:
        return price_id
    if isinstance(price_id, str) and store.get(f"price:{price_id}") is not None:
        raise _error(
            "The price specified is set to `type=one_time` but this field only accepts "
            "prices with `type=recurring`.",
            param,
        )
    raise _error(f"No such price: '{price_id}'", param, "resource_missing")


# --- Checkout, portal, meters ---------------------------------------------------------------


class CheckoutSession(_HarnessObject):
    """A Checkout Session in subscription mode, paid by the harness route, not by a browser."""

    object = "checkout.session"
    _id_prefix = "cs_test_"
    _PARAMS = {
        "mode",
        "customer",
        "customer_email",
        "client_reference_id",
        "line_items",
        "success_url",
        "cancel_url",
        "metadata",
        "subscription_data",
        "allow_promotion_codes",
        "billing_address_collection",
        "locale",
        "payment_method_types",
    }

    def __init__(self, **params):
        _check_known(params, self._PARAMS)
        if _require(params.get("mode"), "mode") != "subscription":
            raise _error("The harness only supports mode=subscription.", "mode")
        line_items = params.get("line_items")
        if not isinstance(line_items, list) or not line_items:
            raise _error(
                "You must provide at least one recurring price in `subscription` mode when using prices.",
                "line_items",
            )
        if len(line_items) != 1:
            raise _error("The harness (like localstripe) supports one line item.", "line_items")
        _check_known(line_items[0], {"price", "quantity"}, "line_items[0]")
        param = "line_items[0][price]"
        price = _lookup(Price, _require(line_items[0].get("price"), param), param)
        if price.type != "recurring":
            raise _error(
                "You must provide at least one recurring price in `subscription` mode when using prices.",
                param,
            )
        if not price.active:
            raise _error("The price specified is inactive. This field only accepts active prices.", param)
        quantity = _int(line_items[0].get("quantity", 1), "line_items[0][quantity]", 1)
        customer = params.get("customer")
        if customer is not None:
            _lookup(Customer, customer, "customer")
            if params.get("customer_email"):
                raise _error(
                    "You may only specify one of these parameters: customer, customer_email.",
                    "customer_email",
                )
        subscription_data = params.get("subscription_data") or {}
        _check_known(subscription_data, {"metadata", "description"}, "subscription_data")

        super().__init__()
        self.mode = "subscription"
        self.status = "open"
        self.payment_status = "unpaid"
        self.customer = customer
        self.customer_email = params.get("customer_email")
        self.client_reference_id = params.get("client_reference_id")
        self.metadata = dict(params.get("metadata") or {})
        self.success_url = params.get("success_url")
        self.cancel_url = params.get("cancel_url")
        self.currency = price.currency
        self.amount_subtotal = self.amount_total = price.unit_amount * quantity
        self.expires_at = self.created + _DAY
        self.subscription = None
        self.url = f"{_BASE_URL}/checkout/pay/{self.id}"
        self._price_id, self._quantity = price.id, quantity
        self._subscription_metadata = dict(subscription_data.get("metadata") or {})

    def _complete(self) -> CheckoutSession:
        if self.status != "open":
            raise _error(f"This Checkout Session is {self.status}, not open.")
        customer = self.customer or Customer(email=self.customer_email).id
        card = {
            "number": "4242424242424242",
            "exp_month": "12",
            "exp_year": str(time.gmtime().tm_year + 5),
            "cvc": "123",
        }
        payment_method = PaymentMethod(type="card", card=card)
        PaymentMethod._api_attach(payment_method.id, customer=customer)
        Customer._api_update(customer, invoice_settings={"default_payment_method": payment_method.id})
        subscription = Subscription(
            customer=customer,
            metadata=dict(self._subscription_metadata),
            items=[{"plan": self._price_id, "quantity": self._quantity}],
        )
        self.customer, self.subscription = customer, subscription.id
        self.status, self.payment_status, self.url = "complete", "paid", None
        schedule_webhook(Event("checkout.session.completed", self))
        return self

    @classmethod
    def _api_expire(cls, id, **unknown):
        session = cls._api_retrieve(id)
        _check_known(unknown, set())
        if session.status != "open":
            raise _error('Only Checkout Sessions with a status in ["open"] can be expired.')
        session.status, session.url = "expired", None
        schedule_webhook(Event("checkout.session.expired", session))
        return session


class PortalSession(_HarnessObject):
    """A Customer Portal session; its url just redirects to return_url."""

    object = "billing_portal.session"
    _id_prefix = "bps_"

    def __init__(self, customer=None, return_url=None, configuration=None, locale=None, **unknown):
        _check_known(unknown, set())
        _lookup(Customer, _require(customer, "customer"), "customer")
        super().__init__()
        self.customer = customer
        self.return_url = return_url
        self.configuration = configuration or "bpc_harness_default"
        self.locale = locale
        self.flow = None
        self.on_behalf_of = None
        self.url = f"{_BASE_URL}/billing_portal/{self.id}"


class Meter(_HarnessObject):
    """A Billing Meter: stored and listed; usage is not aggregated."""

    object = "billing.meter"
    _id_prefix = "mtr_test_"

    def __init__(
        self,
        display_name=None,
        event_name=None,
        default_aggregation=None,
        customer_mapping=None,
        value_settings=None,
        event_time_window=None,
        **unknown,
    ):
        _check_known(unknown, set())
        _require(display_name, "display_name")
        _require(event_name, "event_name")
        formula = (default_aggregation or {}).get("formula")
        if _require(formula, "default_aggregation[formula]") not in ("count", "sum", "last"):
            raise _error(
                "Invalid default_aggregation[formula]: must be one of count, sum, or last",
                "default_aggregation[formula]",
            )
        if any(m.event_name == event_name and m.status == "active" for m in _all(Meter)):
            raise _error(f"An active meter already uses the event_name `{event_name}`.", "event_name")
        super().__init__()
        self.display_name = display_name
        self.event_name = event_name
        self.default_aggregation = {"formula": formula}
        self.customer_mapping = customer_mapping or {
            "event_payload_key": "stripe_customer_id",
            "type": "by_id",
        }
        self.value_settings = value_settings or {"event_payload_key": "value"}
        self.event_time_window = event_time_window
        self.status = "active"
        self.status_transitions = {"deactivated_at": None}
        self.updated = self.created

    @classmethod
    def _api_list_all(cls, url, status=None, limit=None, starting_after=None, **unknown):
        _check_known(unknown, set())
        result = List(url, limit=limit, starting_after=starting_after)
        result._list = [m for m in _all(cls) if status is None or m.status == status]
        return result


class MeterEvent:
    """A v1 billing meter event, stored under its identifier (it has no id of its own)."""

    object = "billing.meter_event"

    @classmethod
    def _api_create(cls, event_name=None, payload=None, identifier=None, timestamp=None, **unknown):
        _check_known(unknown, set())
        _require(event_name, "event_name")
        if not isinstance(_require(payload, "payload"), dict):
            raise _error("Invalid object", "payload")
        now = int(time.time())
        timestamp = _int(now if timestamp is None else timestamp, "timestamp")
        if not now - 35 * _DAY <= timestamp <= now + 300:
            raise _error(
                "The timestamp must be within the past 35 calendar days or up to 5 minutes in the future.",
                "timestamp",
            )
        identifier = identifier or str(uuid.uuid4())
        previous = store.get(f"{cls.object}:{identifier}")
        if previous is not None and previous.created > now - _DAY:
            raise _NoRetryError(400, f"An event already exists with identifier {identifier}.")
        event = cls()
        vars(event).update(
            object=cls.object,
            created=now,
            event_name=event_name,
            identifier=identifier,
            livemode=False,
            payload=dict(payload),
            timestamp=timestamp,
        )
        store[f"{cls.object}:{identifier}"] = event
        return event

    def _export(self, expand=None) -> dict[str, Any]:
        return dict(vars(self))


# --- Middlewares ----------------------------------------------------------------------------

_PUBLIC_PREFIXES = ("/_harness/", "/checkout/pay/", "/billing_portal/")
_SUBSCRIPTION_PATH = re.compile(r"^/v1/subscriptions(?:/(?P<id>[^/]+))?$")


@web.middleware
async def _auth_middleware(request, handler):
    """localstripe's API-key check, except for the harness and the pages behind session urls."""
    if request.path.startswith(_PUBLIC_PREFIXES):
        return await handler(request)
    return await ls.auth_middleware(request, handler)


@web.middleware
async def _fault_middleware(request, handler):
    if request.path.startswith("/v1/") and _FAULT["remaining"] > 0:
        _FAULT["remaining"] -= 1
        status = _FAULT["status"]
        kind = (
            "api_error" if status >= 500 else "rate_limit_error" if status == 429 else "invalid_request_error"
        )
        message = f"Injected by the test harness: Stripe answered {status}."
        return ls.json_response({"error": {"type": kind, "message": message}}, status=status)
    return await handler(request)


@web.middleware
async def _idempotency_middleware(request, handler):
    key = request.headers.get("Idempotency-Key")
    if request.method != "POST" or not key or not request.path.startswith("/v1/"):
        return await handler(request)
    fingerprint = (request.path, await request.read())
    if key in _IDEMPOTENCY:
        first, status, body = _IDEMPOTENCY[key]
        if first != fingerprint:
            message = (
                f"Keys for idempotent requests can only be used with the same parameters "
                f"they were first used with. Try using a key other than '{key}' if you "
                f"meant to execute a different request."
            )
            return ls.json_response({"error": {"type": "idempotency_error", "message": message}}, status=400)
        return web.Response(
            status=status,
            body=body,
            content_type="application/json",
            headers={"Idempotent-Replayed": "true"},
        )
    response = await handler(request)
    if response.status < 400 and isinstance(response.body, bytes):
        _IDEMPOTENCY[key] = (fingerprint, response.status, response.body)
    return response


@web.middleware
async def _subscription_middleware(request, handler):
    """Subscriptions with ``items[N][price]``, and ``customer.subscription.updated`` events."""
    match = _SUBSCRIPTION_PATH.match(request.path)
    if request.method != "POST" or match is None:
        return await handler(request)
    data = await ls.get_post_data(request) or {}
    expand = data.pop("expand", None)
    for n, item in enumerate(data.get("items") or []):
        if isinstance(item, dict) and "price" in item:
            item["plan"] = _plan_for_price(item.pop("price"), f"items[{n}][price]")
    if match["id"] is None:
        return ls.json_response(Subscription._api_create(**data)._export(expand=expand))

    data.pop("proration_behavior", None)
    data.pop("payment_behavior", None)
    before = Subscription._api_retrieve(match["id"])._export()
    try:
        subscription = Subscription._api_update(match["id"], **data)
    except TypeError as exc:  # localstripe's _update has a fixed signature
        raise _error(f"localstripe does not support this update: {exc}") from exc
    after = subscription._export()
    changed = {k: v for k, v in before.items() if after.get(k) != v}
    if changed:
        event = Event("customer.subscription.updated", subscription)
        event.data["previous_attributes"] = changed
        schedule_webhook(event)
    return ls.json_response(subscription._export(expand=expand))


# --- Harness routes -------------------------------------------------------------------------


async def _harness_ping(request):
    return ls.json_response({"ok": True})


async def _harness_fail(request):
    data = await ls.get_post_data(request) or {}
    _FAULT["status"] = _int(data.get("status", 503), "status", 100)
    _FAULT["remaining"] = _int(data.get("count", 1), "count")
    return ls.json_response(dict(_FAULT))


async def _harness_reset(request):
    data = await ls.get_post_data(request) or {}
    store.clear()
    _IDEMPOTENCY.clear()
    _FAULT["remaining"] = 0
    if try_convert_to_bool(data.get("webhooks")) is True:
        ls_webhooks._webhooks.clear()
    return ls.json_response({"reset": True})


async def _harness_complete_checkout(request):
    session = CheckoutSession._api_retrieve(request.match_info["id"])
    return ls.json_response(session._complete()._export())


async def _harness_meter_events(request):
    events = [e._export() for e in _all(MeterEvent)]
    return ls.json_response({"object": "list", "data": events})


async def _checkout_page(request):
    """What the buyer's browser would do at the session url: pay, then go to success_url."""
    session = CheckoutSession._api_retrieve(request.match_info["id"])._complete()
    if session.success_url:
        raise web.HTTPSeeOther(session.success_url.replace("{CHECKOUT_SESSION_ID}", session.id))
    return ls.json_response(session._export())


async def _portal_page(request):
    session = PortalSession._api_retrieve(request.match_info["id"])
    if session.return_url:
        raise web.HTTPSeeOther(session.return_url)
    return ls.json_response(session._export())


def _patch_localstripe() -> None:
    """Modern item fields, the two missing events, and no pickling of the store to /tmp."""
    store.dump_to_disk = lambda: None
    SubscriptionItem.price = property(
        lambda item: store.get(f"price:{item.plan.id}") or _plan_as_price(item.plan)
    )
    SubscriptionItem.current_period_start = property(lambda item: item._current_period()["start"])
    SubscriptionItem.current_period_end = property(lambda item: item._current_period()["end"])

    on_paid = Invoice._on_payment_success

    def _on_payment_success(invoice):
        on_paid(invoice)
        schedule_webhook(Event("invoice.paid", invoice))

    Invoice._on_payment_success = _on_payment_success


def build_app(port: int) -> web.Application:
    """localstripe's app with the stand-ins; call once per process (it patches localstripe)."""
    global _BASE_URL
    _BASE_URL = f"http://127.0.0.1:{port}"
    _patch_localstripe()
    app = ls.app
    app.middlewares[app.middlewares.index(ls.auth_middleware)] = _auth_middleware
    app.middlewares.extend([_fault_middleware, _idempotency_middleware, _subscription_middleware])
    for method, path, make, target in (
        ("POST", "/v1/prices", ls.api_create, Price),
        ("GET", "/v1/prices", ls.api_list_all, Price),
        ("GET", "/v1/prices/{id}", ls.api_retrieve, Price),
        ("POST", "/v1/prices/{id}", ls.api_update, Price),
        ("POST", "/v1/checkout/sessions", ls.api_create, CheckoutSession),
        ("GET", "/v1/checkout/sessions/{id}", ls.api_retrieve, CheckoutSession),
        ("POST", "/v1/checkout/sessions/{id}/expire", ls.api_extra, CheckoutSession._api_expire),
        ("POST", "/v1/billing_portal/sessions", ls.api_create, PortalSession),
        ("POST", "/v1/billing/meters", ls.api_create, Meter),
        ("GET", "/v1/billing/meters", ls.api_list_all, Meter),
        ("GET", "/v1/billing/meters/{id}", ls.api_retrieve, Meter),
        ("POST", "/v1/billing/meter_events", ls.api_create, MeterEvent),
    ):
        app.router.add_route(method, path, make(target, path))
    app.router.add_get("/_harness/ping", _harness_ping)
    app.router.add_post("/_harness/fail", _harness_fail)
    app.router.add_post("/_harness/reset", _harness_reset)
    app.router.add_post("/_harness/checkout/{id}/complete", _harness_complete_checkout)
    app.router.add_get("/_harness/meter_events", _harness_meter_events)
    app.router.add_get("/checkout/pay/{id}", _checkout_page)
    app.router.add_get("/billing_portal/{id}", _portal_page)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="localstripe plus Tollgate's test stand-ins")
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args(argv).port
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    web.run_app(build_app(port), host="127.0.0.1", port=port)


# --- Test-side handle -----------------------------------------------------------------------

_PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FakeStripe:
    """Runs the fake server in a subprocess on 127.0.0.1 and drives its harness routes.

    >>> fake = FakeStripe().start()   # or: with FakeStripe() as fake: ...
    >>> client = fake.client()        # a stripe.StripeClient pointed at fake.url
    >>> fake.stop()
    """

    def __init__(self) -> None:
        self.port = 0
        self.log_path: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._http: httpx.Client | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> FakeStripe:
        self.port = _free_port()
        with tempfile.NamedTemporaryFile("wb", prefix="fake_stripe_", suffix=".log", delete=False) as log:
            self.log_path = log.name
            env = {
                **os.environ,
                "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": os.pathsep.join(
                    p for p in (str(_PROJECT_ROOT), os.environ.get("PYTHONPATH")) if p
                ),
            }
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "tests.harness.fake_stripe", "--port", str(self.port)],
                cwd=_PROJECT_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._http = httpx.Client(base_url=self.url, timeout=10.0, trust_env=False)
        deadline = time.monotonic() + timeout
        while self._proc.poll() is None and time.monotonic() < deadline:
            try:
                if self._http.get("/_harness/ping").status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        output = self.log()
        self.stop()  # also deletes the log
        raise RuntimeError(f"fake Stripe did not answer on {self.url}; its output:\n{output}")

    def stop(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if self.log_path is not None:
            Path(self.log_path).unlink(missing_ok=True)
            self.log_path = None

    def __enter__(self) -> FakeStripe:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def log(self) -> str:
        """The server's output so far (aiohttp access log and webhook deliveries)."""
        return Path(self.log_path).read_text(errors="replace") if self.log_path else ""

    def client(self, api_key: str = "sk_test_harness", **kwargs: Any) -> stripe.StripeClient:
        """A real stripe-python client aimed at this server (kwargs go to StripeClient)."""
        return stripe.StripeClient(api_key, base_addresses={"api": self.url}, **kwargs)

    def _call(self, method: str, path: str, json: Any = None) -> Any:
        if self._http is None:
            raise RuntimeError("FakeStripe is not started")
        response = self._http.request(method, path, json=json)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path} -> {response.status_code}: {response.text}")
        return response.json() if response.content else None

    def reset(self, *, webhooks: bool = False) -> None:
        """Wipe localstripe's data, idempotency keys, meter events, a pending fault (and the
        webhook registrations if asked)."""
        self._call("POST", "/_harness/reset", {"webhooks": webhooks})

    def fail(self, status: int = 503, count: int = 1) -> None:
        """The next ``count`` /v1/* requests answer ``status`` with a Stripe-shaped error."""
        self._call("POST", "/_harness/fail", {"status": status, "count": count})

    def complete_checkout(self, session_id: str) -> dict[str, Any]:
        """Pay an open Checkout Session; returns the completed session."""
        result: dict[str, Any] = self._call("POST", f"/_harness/checkout/{session_id}/complete")
        return result

    def meter_events(self) -> list[dict[str, Any]]:
        """Every meter event recorded since the last reset, oldest first."""
        result: list[dict[str, Any]] = self._call("GET", "/_harness/meter_events")["data"]
        return result

    def register_webhook(
        self, url: str, secret: str, events: list[str] | None = None, webhook_id: str = "default"
    ) -> None:
        """Have localstripe POST events (all, or only ``events``) to ``url``, signed with
        ``secret``; registering the same ``webhook_id`` again replaces it."""
        body: dict[str, Any] = {"url": url, "secret": secret}
        if events is not None:
            body["events"] = list(events)
        self._call("POST", f"/_config/webhooks/{webhook_id}", body)


if __name__ == "__main__":
    main()
