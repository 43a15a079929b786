"""The fake Stripe server, driven by the real stripe-python client."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import stripe

from .fake_stripe import FakeStripe

SECRET = "whsec_test_harness"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeStripe]:
    with FakeStripe() as server:
        yield server


@pytest.fixture
def client(fake: FakeStripe) -> stripe.StripeClient:
    fake.reset(webhooks=True)
    return fake.client()


class _Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((body, self.headers["Stripe-Signature"]))  # type: ignore[attr-defined]
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[http.server.ThreadingHTTPServer]:
    """A webhook endpoint on 127.0.0.1 keeping each (raw body, Stripe-Signature)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.received = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def webhook_url(server: http.server.ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/stripe/webhook"


def wait_for_webhook(server: Any, event_type: str, timeout: float = 10.0) -> tuple[bytes, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for body, signature in list(server.received):
            if json.loads(body)["type"] == event_type:
                return body, signature
        time.sleep(0.05)
    raise AssertionError(f"no {event_type} webhook within {timeout} s")


def make_price(client: stripe.StripeClient, lookup_key: str, amount: int = 1000) -> Any:
    product = client.v1.products.create({"name": f"Tollgate {lookup_key}"})
    return client.v1.prices.create(
        {
            "product": product.id,
            "unit_amount": amount,
            "currency": "usd",
            "recurring": {"interval": "month"},
            "lookup_key": lookup_key,
        }
    )


def subscribe(fake: FakeStripe, client: stripe.StripeClient, price_id: str) -> Any:
    customer = client.v1.customers.create({"email": "owner@example.com"})
    session = client.v1.checkout.sessions.create(
        {
            "mode": "subscription",
            "customer": customer.id,
            "client_reference_id": "org_1",
            "line_items": [{"price": price_id, "quantity": 1}],
            "success_url": "https://app.example/ok?cs={CHECKOUT_SESSION_ID}",
            "cancel_url": "https://app.example/cancel",
            "metadata": {"org_id": "org_1"},
            "subscription_data": {"metadata": {"org_id": "org_1"}},
        }
    )
    return session, fake.complete_checkout(session.id)


def test_idempotency_key_replays_the_first_response(client: stripe.StripeClient) -> None:
    first = client.v1.customers.create({"email": "a@example.com"}, {"idempotency_key": "cus:1"})
    again = client.v1.customers.create({"email": "a@example.com"}, {"idempotency_key": "cus:1"})
    other = client.v1.customers.create({"email": "a@example.com"}, {"idempotency_key": "cus:2"})

    assert again.id == first.id
    assert other.id != first.id
    with pytest.raises(stripe.IdempotencyError):
        client.v1.customers.create({"email": "b@example.com"}, {"idempotency_key": "cus:1"})


def test_prices_are_found_by_lookup_key(client: stripe.StripeClient) -> None:
    old = make_price(client, "pro_monthly", 1000)
    found = client.v1.prices.list({"lookup_keys": ["pro_monthly"], "active": True})
    assert [p.id for p in found.data] == [old.id]
    assert old.lookup_key == "pro_monthly"
    assert old.recurring.interval == "month"

    with pytest.raises(stripe.InvalidRequestError) as taken:
        client.v1.prices.create(
            {
                "product": old.product,
                "unit_amount": 1200,
                "currency": "usd",
                "recurring": {"interval": "month"},
                "lookup_key": "pro_monthly",
            }
        )
    assert taken.value.param == "lookup_key"

    new = client.v1.prices.create(
        {
            "product": old.product,
            "unit_amount": 1200,
            "currency": "usd",
            "recurring": {"interval": "month"},
            "lookup_key": "pro_monthly",
            "transfer_lookup_key": True,
        }
    )
    assert [p.id for p in client.v1.prices.list({"lookup_keys": ["pro_monthly"]}).data] == [new.id]
    assert client.v1.prices.retrieve(old.id).lookup_key is None

    archived = client.v1.prices.update(old.id, {"active": False, "metadata": {"v": "1"}})
    assert archived.active is False
    assert archived.metadata["v"] == "1"
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.prices.retrieve("price_nope")
    assert missing.value.http_status == 404
    assert missing.value.code == "resource_missing"


def test_checkout_session_validates_its_params(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create({})
    price = make_price(client, "team_monthly")
    base = {"mode": "subscription", "customer": customer.id, "success_url": "https://x/ok"}
    cases = [
        ({**base, "line_items": [{"price": "price_nope", "quantity": 1}]}, "line_items[0][price]"),
        ({**base, "line_items": [{"quantity": 1}]}, "line_items[0][price]"),
        ({**base, "customer": "cus_nope", "line_items": [{"price": price.id}]}, "customer"),
        ({**base, "mode": None, "line_items": [{"price": price.id}]}, "mode"),
        ({**base, "line_items": [{"price": price.id}], "bogus": "1"}, "bogus"),
    ]
    for params, param in cases:
        with pytest.raises(stripe.InvalidRequestError) as error:
            client.v1.checkout.sessions.create(params)
        assert error.value.param == param
        assert error.value.http_status == 400


def test_completed_checkout_creates_the_subscription_and_a_signed_webhook(
    fake: FakeStripe, client: stripe.StripeClient, receiver: Any
) -> None:
    fake.register_webhook(webhook_url(receiver), SECRET, events=["checkout.session.completed"])
    price = make_price(client, "pro_monthly")

    session, completed = subscribe(fake, client, price.id)
    assert session.status == "open"
    assert session.subscription is None
    assert session.url.startswith(fake.url)

    fetched = client.v1.checkout.sessions.retrieve(session.id)
    assert fetched.status == "complete"
    assert fetched.subscription == completed["subscription"]
    subscription = client.v1.subscriptions.retrieve(fetched.subscription)
    assert subscription.status == "active"
    assert subscription.customer == session.customer
    assert subscription.metadata["org_id"] == "org_1"
    item = subscription["items"].data[0]
    assert item.price.id == price.id
    assert item.price.lookup_key == "pro_monthly"
    assert item.current_period_end > item.current_period_start

    body, signature = wait_for_webhook(receiver, "checkout.session.completed")
    event = stripe.Webhook.construct_event(body.decode(), signature, SECRET)
    assert event.data.object.id == session.id
    assert event.data.object.client_reference_id == "org_1"
    assert event.data.object.subscription == subscription.id
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body.decode(), signature, "whsec_wrong")


def test_checkout_url_pays_and_redirects_and_expire(fake: FakeStripe, client: stripe.StripeClient) -> None:
    price = make_price(client, "pro_monthly")
    customer = client.v1.customers.create({})
    params = {
        "mode": "subscription",
        "customer": customer.id,
        "line_items": [{"price": price.id}],
        "success_url": "https://x/ok?cs={CHECKOUT_SESSION_ID}",
    }
    paid = client.v1.checkout.sessions.create(params)
    page = httpx.get(paid.url, follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == f"https://x/ok?cs={paid.id}"

    abandoned = client.v1.checkout.sessions.create(params)
    assert client.v1.checkout.sessions.expire(abandoned.id).status == "expired"
    with pytest.raises(RuntimeError, match="expired"):
        fake.complete_checkout(abandoned.id)


def test_subscription_update_to_another_price(
    fake: FakeStripe, client: stripe.StripeClient, receiver: Any
) -> None:
    fake.register_webhook(webhook_url(receiver), SECRET, events=["customer.subscription.updated"])
    starter, pro = make_price(client, "starter_monthly", 500), make_price(client, "pro_monthly")
    _, completed = subscribe(fake, client, starter.id)
    subscription = client.v1.subscriptions.retrieve(completed["subscription"])

    updated = client.v1.subscriptions.update(
        subscription.id,
        {
            "items": [{"id": subscription["items"].data[0].id, "price": pro.id}],
            "proration_behavior": "create_prorations",
        },
    )
    item = updated["items"].data[0]
    assert item.price.id == pro.id
    assert item.plan.id == pro.id
    assert item.current_period_start == updated.current_period_start

    body, signature = wait_for_webhook(receiver, "customer.subscription.updated")
    event = stripe.Webhook.construct_event(body.decode(), signature, SECRET)
    assert event.data.object["items"].data[0].price.id == pro.id
    assert event.data.previous_attributes["items"].data[0].price.id == starter.id

    with pytest.raises(stripe.InvalidRequestError) as error:
        client.v1.subscriptions.update(subscription.id, {"items": [{"price": "price_nope"}]})
    assert error.value.param == "items[0][price]"


def test_billing_portal_session(fake: FakeStripe, client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create({})
    portal = client.v1.billing_portal.sessions.create(
        {"customer": customer.id, "return_url": "https://app.example/billing"}
    )
    assert portal.object == "billing_portal.session"
    assert portal.id.startswith("bps_")
    assert portal.customer == customer.id
    assert portal.return_url == "https://app.example/billing"
    assert portal.url.startswith(fake.url)
    with pytest.raises(stripe.InvalidRequestError) as error:
        client.v1.billing_portal.sessions.create({"customer": "cus_nope"})
    assert error.value.param == "customer"


def test_meter_events_are_recorded_once_per_identifier(fake: FakeStripe, client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create({})
    meter = client.v1.billing.meters.create(
        {
            "display_name": "API calls",
            "event_name": "api_calls",
            "default_aggregation": {"formula": "sum"},
        }
    )
    assert [m.id for m in client.v1.billing.meters.list().data] == [meter.id]
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.billing.meters.create(
            {
                "display_name": "again",
                "event_name": "api_calls",
                "default_aggregation": {"formula": "sum"},
            }
        )

    usage = {
        "event_name": "api_calls",
        "identifier": "org_1:2026-01-01T00",
        "payload": {"stripe_customer_id": customer.id, "value": "42"},
    }
    created = client.v1.billing.meter_events.create(usage)
    assert created.identifier == usage["identifier"]
    with pytest.raises(stripe.InvalidRequestError, match="already exists") as duplicate:
        client.v1.billing.meter_events.create(usage)
    assert duplicate.value.http_status == 400
    assert duplicate.value.headers["Stripe-Should-Retry"] == "false"

    recorded = fake.meter_events()
    assert len(recorded) == 1
    assert recorded[0]["payload"] == {"stripe_customer_id": customer.id, "value": "42"}


def test_fail_switch_makes_stripe_unavailable(fake: FakeStripe, client: stripe.StripeClient) -> None:
    fake.fail(503, count=2)
    for _ in range(2):
        with pytest.raises(stripe.APIError) as error:
            client.v1.customers.create({}, {"idempotency_key": "outage"})
        assert error.value.http_status == 503
    assert client.v1.customers.create({}, {"idempotency_key": "outage"}).id.startswith("cus_")

    fake.fail(503, count=1)  # a client that retries rides over a single failure
    assert fake.client(max_network_retries=1).v1.customers.create({}).id.startswith("cus_")


def test_reset_wipes_the_data(fake: FakeStripe, client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create({})
    fake.reset()
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.customers.retrieve(customer.id)
