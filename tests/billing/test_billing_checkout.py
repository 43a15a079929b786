"""Checkout and portal against the fake Stripe, with webhooks delivered to the running app."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from app.billing.errors import StripeRequestRejected, StripeUnavailable
from app.billing.stripe_client import StripeGateway
from app.orgs.schemas import OrganizationCreate
from app.orgs.services import ApiKeyService, OrganizationService
from app.settings import StripeSettings
from tests.billing.conftest import Billing


def _ts(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(UTC).timestamp())


async def test_upgrade_free_to_team_raises_limits_at_once_and_follows_the_subscription_period(
    served: Billing,
) -> None:
    org = await served.org("free")
    assert (await served.consume(org["id"], 5_000))["accepted"] is True
    denied = await served.consume(org["id"], 1)
    assert denied["accepted"] is False
    assert denied["items"][0]["reason"] == "usage_exceeded"

    result = await served.subscribe(org["id"], "team")
    paid_at = time.monotonic()
    assert result["checkout"]["url"].startswith(served.fake.url)
    session = result["session"]
    assert session["client_reference_id"] == org["id"]

    upgraded = await served.wait_org(org["id"], plan="team", billing_source="stripe")
    assert time.monotonic() - paid_at < 5  # Stripe delivers ~1 s after the event; then one job
    assert upgraded["quotas"]["error"] == 50_000
    sub = (await served.call(served.stripe.v1.subscriptions.retrieve, session["subscription"])).to_dict()
    assert sub["metadata"]["organization_id"] == org["id"]
    assert _ts(upgraded["current_period"]["start"]) == sub["current_period_start"]
    assert _ts(upgraded["current_period"]["end"]) == sub["current_period_end"]

    # The meter sees the new plan and the subscription's period (a new paid period starts).
    after = await served.consume(org["id"], 1)
    assert after["accepted"] is True
    assert after["items"][0]["limit"] == 50_000
    assert after["period_start"] == sub["current_period_start"]
    assert after["period_end"] == sub["current_period_end"]

    kinds = [(e["kind"], e["actor"]) for e in await served.audit(org["id"])]
    assert any(k == "plan.changed" and a.startswith("stripe:") for k, a in kinds), kinds


async def test_team_to_business_changes_the_subscription_in_place(served: Billing) -> None:
    org = await served.org("free")
    result = await served.subscribe(org["id"], "team")
    await served.wait_org(org["id"], plan="team")
    await served.consume(org["id"], 1_000)
    customer = result["session"]["customer"]

    resp = await served.checkout(org["id"], "business")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["mode"] == "updated" and body["url"] is None
    assert body["subscription_id"] == result["session"]["subscription"]

    # In effect before any webhook arrives; usage so far counts against the new plan.
    org_now = await served.get_org(org["id"])
    assert org_now["plan"] == "business"
    after = await served.consume(org["id"], 1)
    assert after["items"][0]["remaining"] == 50_000 - 1_001

    subs = await served.call(served.stripe.v1.subscriptions.list, {"customer": customer})
    assert [s.id for s in subs.data] == [result["session"]["subscription"]]
    item = subs.data[0]["items"].data[0]
    assert item.price.lookup_key == "tollgate_business_v1_month"

    # The webhooks that follow (updated, invoices) change nothing more.
    await served.wait_org(org["id"], plan="business")
    again = await served.checkout(org["id"], "business")
    assert again.status_code == 409
    assert again.json()["error"] == "plan_already_active"


async def test_checkout_refusals_are_clear(served: Billing) -> None:
    org = await served.org("team")
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"plan": "team"}, 409, "plan_already_active"),
        ({"plan": "enterprise"}, 422, "plan_not_purchasable"),
        ({"plan": "free"}, 422, "plan_not_purchasable"),
        ({"plan": "platinum"}, 422, "unknown_plan"),
        ({"plan": "business", "interval": "week"}, 400, "validation_error"),
        ({"plan": "business", "success_url": "javascript:alert(1)"}, 400, "validation_error"),
        ({"plan": "business", "coupon": "FREE"}, 400, "validation_error"),
    ]
    for body, status, code in cases:
        resp = await served.client.post(f"/v1/organizations/{org['id']}/checkout", json=body)
        assert (resp.status_code, resp.json()["error"]) == (status, code), (body, resp.text)


async def test_an_org_key_checks_out_its_own_org_only(served: Billing) -> None:
    org, other = await served.org(), await served.org()
    key = (await served.client.post(f"/v1/organizations/{org['id']}/api-keys", json={})).json()["secret"]
    headers = {"Authorization": f"Bearer {key}"}
    mine = await served.client.post(
        f"/v1/organizations/{org['id']}/checkout", json={"plan": "team", "interval": "year"}, headers=headers
    )
    assert mine.status_code == 200, mine.text
    assert mine.json()["interval"] == "year"
    theirs = await served.client.post(
        f"/v1/organizations/{other['id']}/checkout", json={"plan": "team"}, headers=headers
    )
    assert theirs.status_code == 404
    nobody = await served.client.post(
        f"/v1/organizations/{org['id']}/checkout", json={"plan": "team"}, headers={"Authorization": ""}
    )
    assert nobody.status_code == 401


async def test_customer_is_created_once_and_portal_opens_for_it(served: Billing) -> None:
    org = await served.org()
    no_customer = await served.client.post(f"/v1/organizations/{org['id']}/portal")
    assert no_customer.status_code == 409
    assert no_customer.json()["error"] == "no_billing_account"

    first = await served.checkout(org["id"], "team")
    second = await served.checkout(org["id"], "business", success_url="https://app.example/ok")
    assert first.status_code == second.status_code == 200
    s1 = await served.call(served.stripe.v1.checkout.sessions.retrieve, first.json()["session_id"])
    s2 = await served.call(served.stripe.v1.checkout.sessions.retrieve, second.json()["session_id"])
    assert s1.customer == s2.customer
    assert s2.success_url == "https://app.example/ok"
    assert s1.client_reference_id == org["id"]

    portal = await served.client.post(
        f"/v1/organizations/{org['id']}/portal", json={"return_url": "https://app.example/billing"}
    )
    assert portal.status_code == 200, portal.text
    page = await served.call(httpx.get, portal.json()["url"], follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "https://app.example/billing"


async def test_stripe_down_answers_503_and_creates_nothing_half(served: Billing) -> None:
    org = await served.org()
    await served.call(served.fake.fail, 503, 10)
    try:
        resp = await served.checkout(org["id"], "team")
    finally:
        await served.call(served.fake.fail, 503, 0)
    assert resp.status_code == 503
    assert resp.json()["error"] == "stripe_unavailable"
    assert "Injected" not in resp.text  # Stripe's message is not echoed

    ok = await served.checkout(org["id"], "team")
    assert ok.status_code == 200, ok.text
    customers = await served.call(
        lambda: list(served.stripe.v1.customers.list({"limit": 100}).auto_paging_iter())
    )
    mine = [c for c in customers if c.to_dict()["metadata"].get("organization_id") == org["id"]]
    assert len(mine) == 1

    # Portal too: 503 with a JSON error while Stripe fails.
    await served.call(served.fake.fail, 500, 10)
    try:
        portal = await served.client.post(f"/v1/organizations/{org['id']}/portal")
    finally:
        await served.call(served.fake.fail, 503, 0)
    assert portal.status_code == 503 and portal.json()["error"] == "stripe_unavailable"


async def test_marketplace_billed_orgs_are_never_sent_to_stripe(served: Billing) -> None:
    ctx = served.ctx
    async with ctx.sessions() as session:
        org = await OrganizationService(session, ctx).create(
            OrganizationCreate(name=f"Heroku {uuid.uuid4().hex[:6]}"), "test", billing_source="marketplace"
        )
        await ApiKeyService(session, ctx).create(org, "k", "test")
    for path, body in (("checkout", {"plan": "team"}), ("portal", None)):
        resp = await served.client.post(f"/v1/organizations/{org.id}/{path}", json=body)
        assert resp.status_code == 409, resp.text
        assert resp.json()["error"] == "marketplace_billed"


async def test_billing_not_configured_is_a_clear_503(make_client: Any) -> None:
    async with make_client() as client:
        org = (await client.post("/v1/organizations", json={"name": "Unbilled"})).json()
        resp = await client.post(f"/v1/organizations/{org['id']}/checkout", json={"plan": "team"})
        assert resp.status_code == 503 and resp.json()["error"] == "stripe_not_configured"
        hook = await client.post("/webhooks/stripe", content=b"{}", headers={"Stripe-Signature": "t=1,v1=x"})
        assert hook.status_code == 503 and hook.json()["error"] == "stripe_webhooks_not_configured"


async def test_the_wrapper_maps_stripe_failures_to_tollgate_errors(fake: Any, synced: None) -> None:
    dead = StripeGateway(StripeSettings(api_key=SecretStr("sk_test_x"), api_base="http://127.0.0.1:9"))
    with pytest.raises(StripeUnavailable):  # connection refused
        await dead.get_subscription("sub_123")

    live = StripeGateway(StripeSettings(api_key=SecretStr("sk_test_x"), api_base=fake.url))
    assert await live.get_subscription("sub_does_not_exist") is None  # 404
    with pytest.raises(StripeRequestRejected) as rejected:
        await live.create_price({"currency": "usd"}, "tollgate:test:bad-price")
    assert rejected.value.status_code == 422
