"""The webhook endpoint: signatures on the raw body, store-once, and order-independent processing.
On SQLite (served by uvicorn, also receiving the fake Stripe's own deliveries) and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from sqlalchemy import select

from app.db.models import StripeEvent
from tests.billing.conftest import OLD_SECRET, SECRET, Billing, event, post_event, sign, wait_for


@pytest.fixture(params=["sqlite", "postgresql"])
def billing(request: pytest.FixtureRequest) -> Billing:
    return request.getfixturevalue("served" if request.param == "sqlite" else "pg")  # type: ignore[no-any-return]


async def test_signature_is_verified_on_the_raw_body_before_anything_is_stored(billing: Billing) -> None:
    payload = event("tollgate.unknown_kind", {"id": "obj_1", "object": "thing"})
    body = json.dumps(payload).encode()
    client = billing.client

    async def deliver(data: bytes, signature: str | None) -> Any:
        headers = {"Content-Type": "application/json"}
        if signature is not None:
            headers["Stripe-Signature"] = signature
        return await client.post("/webhooks/stripe", content=data, headers=headers)

    refused = [
        await deliver(body, None),
        await deliver(body, "garbage"),
        await deliver(body, sign(body, "whsec_someone_else")),
        await deliver(body + b" ", sign(body)),  # the body changed after signing
        await deliver(body, sign(body, timestamp=int(time.time()) - 301)),  # replayed later
        await deliver(body, sign(body).replace("v1=", "v0=")),
    ]
    for resp in refused:
        assert resp.status_code == 400, resp.text
        assert resp.json()["error"] == "invalid_signature"
    assert "old" in refused[4].json()["detail"]

    # Nothing was stored: the first good delivery is new. The previous secret still verifies
    # (rotation), and an unknown event type is acknowledged.
    first = await deliver(body, sign(body, OLD_SECRET))
    assert first.status_code == 200, first.text
    assert first.json() == {"received": True, "event_id": payload["id"], "duplicate": False}
    again = await deliver(body, sign(body, SECRET))
    assert again.json()["duplicate"] is True

    not_json = b"{not json"
    bad = await deliver(not_json, sign(not_json))
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_event"
    no_id = json.dumps({"type": "x", "data": {"object": {}}}).encode()
    assert (await deliver(no_id, sign(no_id))).status_code == 400


async def _subscribed(billing: Billing, plan: str = "team") -> tuple[dict[str, Any], dict[str, Any]]:
    """An org that paid a checkout; returns (org, the subscription as Stripe has it now)."""
    org = await billing.org()
    result = await billing.subscribe(org["id"], plan)
    sub = await billing.call(billing.stripe.v1.subscriptions.retrieve, result["session"]["subscription"])
    return org, sub.to_dict(for_json=True)


def _plan_changes(audit: list[dict[str, Any]]) -> list[str]:
    return [e["detail"]["to"] for e in audit if e["kind"] == "plan.changed"]


async def test_concurrent_duplicate_deliveries_are_stored_and_applied_once(billing: Billing) -> None:
    org, sub = await _subscribed(billing)
    payload = event("customer.subscription.updated", sub)

    answers = await asyncio.gather(*(post_event(billing.client, payload) for _ in range(8)))
    assert [r.status_code for r in answers] == [200] * 8
    assert sorted(r.json()["duplicate"] for r in answers) == [False] + [True] * 7

    await billing.wait_org(org["id"], plan="team", billing_source="stripe")
    await asyncio.sleep(1.5)  # let the fake's own deliveries (SQLite app) land too
    assert _plan_changes(await billing.audit(org["id"])) == ["team@v1"]


async def test_out_of_order_and_replayed_events_never_move_an_org_backwards(billing: Billing) -> None:
    org, sub = await _subscribed(billing)
    session = {
        "id": "cs_test_replay",
        "object": "checkout.session",
        "client_reference_id": org["id"],
        "customer": sub["customer"],
        "subscription": sub["id"],
        "mode": "subscription",
    }
    # `updated` arrives before `created`, then the checkout: each one acts on Stripe's state now.
    updated = event("customer.subscription.updated", sub)
    for payload in (
        updated,
        event("customer.subscription.created", sub),
        event("checkout.session.completed", session),
    ):
        assert (await post_event(billing.client, payload)).status_code == 200
    await billing.wait_org(org["id"], plan="team")

    # The org moves to business in place; the stale team-state events, replayed or late, do not
    # move it back.
    resp = await billing.checkout(org["id"], "business")
    assert resp.status_code == 200 and resp.json()["mode"] == "updated"
    replay = await post_event(billing.client, updated)
    assert replay.json()["duplicate"] is True
    late = event("customer.subscription.updated", sub)  # a new id, an old snapshot
    assert (await post_event(billing.client, late)).json()["duplicate"] is False
    await asyncio.sleep(1.5)
    assert (await billing.get_org(org["id"]))["plan"] == "business"
    assert _plan_changes(await billing.audit(org["id"])) == ["team@v1", "business@v1"]


async def test_events_for_unknown_objects_are_acknowledged_and_change_nothing(billing: Billing) -> None:
    org = await billing.org()
    foreign = {
        "id": "sub_not_ours",
        "object": "subscription",
        "customer": "cus_not_ours",
        "status": "active",
        "metadata": {},
    }
    for kind in ("customer.subscription.updated", "invoice.paid", "customer.deleted"):
        obj = foreign if kind != "customer.deleted" else {"id": "cus_not_ours", "object": "customer"}
        resp = await post_event(billing.client, event(kind, obj))
        assert resp.status_code == 200, resp.text
    await asyncio.sleep(0.5)
    assert (await billing.get_org(org["id"]))["plan"] == "free"


async def test_processing_retries_with_backoff_while_stripe_fails(served: Billing) -> None:
    org = await served.org()
    resp = await served.checkout(org["id"], "team")
    completed = await served.call(served.fake.complete_checkout, resp.json()["session_id"])
    await served.wait_org(org["id"], plan="team")
    await asyncio.sleep(2)  # the fake's own deliveries are over
    await served.call(
        served.stripe.v1.subscriptions.update, completed["subscription"], {"metadata": {"x": "1"}}
    )
    sub = await served.call(served.stripe.v1.subscriptions.retrieve, completed["subscription"])
    # Stripe fails: each processing attempt re-fetches the subscription, 2 requests per attempt
    # (one network retry), so the first two attempts fail and the worker retries with backoff.
    await served.call(served.fake.fail, 503, 4)
    payload = event("customer.subscription.updated", sub.to_dict(for_json=True))
    assert (await post_event(served.client, payload)).status_code == 200

    async def processed() -> StripeEvent | None:
        async with served.ctx.sessions() as session:
            row = await session.scalar(select(StripeEvent).where(StripeEvent.stripe_id == payload["id"]))
        return row if row is not None and row.processed_at is not None else None

    stored = await wait_for(processed)
    assert stored.attempts >= 2, stored.outcome
    assert stored.outcome.startswith("active: team")
