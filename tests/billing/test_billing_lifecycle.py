"""A subscription's life after checkout: cancellation, dunning, restoration, overage reporting.
Stripe's side is driven through the fake server; its webhooks reach the app served on a port;
scheduled jobs run with a clock moved forward (as if days had passed)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select

from app.billing.tasks import end_canceled_subscriptions, enforce_dunning, report_overage
from app.db.models import OverageReport
from app.main import flush_once
from tests.billing.conftest import Billing, event, later, post_event, wait_for

DECLINED_CARD = "4000000000000341"  # attaches, then every charge is declined
GOOD_CARD = "4242424242424242"


async def _team(served: Billing) -> tuple[dict[str, Any], dict[str, Any]]:
    org = await served.org()
    result = await served.subscribe(org["id"], "team")
    await served.wait_org(org["id"], plan="team", billing_source="stripe")
    sub = await served.call(served.stripe.v1.subscriptions.retrieve, result["session"]["subscription"])
    return org, sub.to_dict(for_json=True)


async def _billing(served: Billing, org_id: str) -> dict[str, Any]:
    resp = await served.client.get(f"/v1/organizations/{org_id}/billing")
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


async def _wait_billing(served: Billing, org_id: str, **expected: Any) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        state = await _billing(served, org_id)
        return state if all(state[k] == v for k, v in expected.items()) else None

    return await wait_for(probe)  # type: ignore[no-any-return]


def _transitions(audit: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [
        (e["kind"], e["detail"].get("to", ""), e["actor"].split(":")[1])
        for e in audit
        if e["kind"] in ("plan.changed", "status.changed")
    ]


async def _card(served: Billing, customer: str, number: str) -> None:
    stripe = served.stripe

    def attach() -> None:
        pm = stripe.v1.payment_methods.create(
            {"type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2035, "cvc": "123"}}
        )
        stripe.v1.payment_methods.attach(pm.id, {"customer": customer})
        stripe.v1.customers.update(customer, {"invoice_settings": {"default_payment_method": pm.id}})

    await served.call(attach)


async def _fail_renewal(served: Billing, sub: dict[str, Any]) -> dict[str, Any]:
    """The card is declined on the next invoice: moving to the annual price makes localstripe
    invoice and charge at once, and the declined charge puts the subscription past_due."""
    await _card(served, sub["customer"], DECLINED_CARD)
    annual = await served.call(served.stripe.v1.prices.list, {"lookup_keys": ["tollgate_team_v1_year"]})
    item = sub["items"]["data"][0]["id"]
    updated = await served.call(
        served.stripe.v1.subscriptions.update,
        sub["id"],
        {"items": [{"id": item, "price": annual.data[0].id}]},
    )
    assert updated.status == "past_due"
    invoices = await served.call(served.stripe.v1.invoices.list, {"subscription": sub["id"], "limit": 100})
    unpaid = [i for i in invoices.data if i.status == "open"]
    assert unpaid, "localstripe left no open invoice"
    return unpaid[-1].to_dict(for_json=True)  # type: ignore[no-any-return]


async def test_cancel_at_period_end_keeps_the_plan_until_the_period_ends(served: Billing) -> None:
    org, sub = await _team(served)
    await served.call(served.stripe.v1.subscriptions.update, sub["id"], {"cancel_at_period_end": True})
    state = await _wait_billing(served, org["id"], cancel_at_period_end=True)
    assert state["subscription_status"] == "active"
    assert (await served.get_org(org["id"]))["plan"] == "team"

    assert await end_canceled_subscriptions(later(served.ctx, days=1)) == 0
    assert (await served.get_org(org["id"]))["plan"] == "team"

    assert await end_canceled_subscriptions(later(served.ctx, days=32)) >= 1
    ended = await served.get_org(org["id"])
    assert (ended["plan"], ended["billing_source"]) == ("free", "self")
    assert (await _billing(served, org["id"]))["subscription_status"] == "canceled"
    assert _transitions(await served.audit(org["id"]))[-1] == ("plan.changed", "free@v1", "period-end")


async def test_a_deleted_subscription_drops_the_org_to_free(served: Billing) -> None:
    org, sub = await _team(served)
    await served.call(served.stripe.v1.subscriptions.cancel, sub["id"])
    ended = await served.wait_org(org["id"], plan="free")
    assert ended["quotas"]["error"] == 5_000
    denied = await served.consume(org["id"], 5_001)
    assert denied["accepted"] is False and denied["items"][0]["limit"] == 5_000


async def test_a_deleted_customer_ends_billing_and_a_new_checkout_creates_a_new_one(served: Billing) -> None:
    org, sub = await _team(served)
    await served.call(served.stripe.v1.customers.delete, sub["customer"])
    await served.wait_org(org["id"], plan="free")
    state = await _billing(served, org["id"])
    assert (state["has_customer"], state["subscription_status"]) == (False, "canceled")

    again = await served.checkout(org["id"], "team")
    assert again.status_code == 200, again.text
    session = await served.call(served.stripe.v1.checkout.sessions.retrieve, again.json()["session_id"])
    assert session.customer != sub["customer"]


async def test_payment_failed_grace_then_downgrade_then_paid_restores(served: Billing) -> None:
    org, sub = await _team(served)
    invoice = await _fail_renewal(served, sub)
    # Stripe also sends invoice.payment_failed (localstripe does not for an immediate decline).
    assert (await post_event(served.client, event("invoice.payment_failed", invoice))).status_code == 200

    past_due = await served.wait_org(org["id"], status="past_due")
    assert past_due["plan"] == "team"  # service is kept during the grace period
    state = await _billing(served, org["id"])
    assert state["dunning_state"] == "grace" and state["grace_ends_at"] is not None
    assert (await served.consume(org["id"], 1_000))["accepted"] is True

    assert await enforce_dunning(later(served.ctx, days=6)) == 0
    assert (await served.get_org(org["id"]))["plan"] == "team"
    assert await enforce_dunning(later(served.ctx, days=8)) >= 1
    downgraded = await served.get_org(org["id"])
    assert (downgraded["plan"], downgraded["status"]) == ("free", "past_due")
    assert (await _billing(served, org["id"]))["dunning_state"] == "downgraded"
    refused = await served.consume(org["id"], 4_001)  # 1,000 used + 4,001 > the free 5,000
    assert refused["accepted"] is False and refused["items"][0]["limit"] == 5_000

    # The customer fixes the card; paying the invoice sends invoice.paid and restores the plan.
    await _card(served, sub["customer"], GOOD_CARD)
    paid = await served.call(served.stripe.v1.invoices.pay, invoice["id"])
    assert paid.status == "paid"
    restored = await served.wait_org(org["id"], plan="team", status="active")
    assert restored["quotas"]["error"] == 50_000
    assert (await _billing(served, org["id"]))["dunning_state"] is None
    assert (await served.consume(org["id"], 1))["accepted"] is True

    # Every transition is in the org's audit trail, with the Stripe event (any may come first:
    # each one acts on the subscription's current state) or the dunning job that caused it.
    steps = _transitions(await served.audit(org["id"]))
    assert [(kind, to) for kind, to, _ in steps[-4:]] == [
        ("status.changed", "past_due"),
        ("plan.changed", "free@v1"),
        ("plan.changed", "team@v1"),
        ("status.changed", "active"),
    ], steps
    assert steps[-3][2] == "dunning"
    assert all(actor.startswith(("customer.", "invoice.", "checkout.")) for *_, actor in steps[-4::3])


async def test_dunning_can_suspend_instead_and_payment_lifts_it(served: Billing) -> None:
    org, sub = await _team(served)
    invoice = await _fail_renewal(served, sub)
    await served.wait_org(org["id"], status="past_due")

    assert await enforce_dunning(later(served.ctx, days=8, dunning_action="suspend")) >= 1
    suspended = await served.get_org(org["id"])
    assert (suspended["plan"], suspended["status"]) == ("team", "suspended")
    refused = await served.consume(org["id"], 1)
    assert refused["items"][0]["reason"] == "suspended"

    await _card(served, sub["customer"], GOOD_CARD)
    await served.call(served.stripe.v1.invoices.pay, invoice["id"])
    await served.wait_org(org["id"], plan="team", status="active")
    assert (await served.consume(org["id"], 1))["accepted"] is True


async def test_on_demand_overage_is_reported_once_per_delta(served: Billing) -> None:
    org, sub = await _team(served)
    patched = await served.client.patch(
        f"/v1/organizations/{org['id']}", json={"on_demand_budget_cents": 100_000, "spike_protection": False}
    )
    assert patched.status_code == 200, patched.text
    assert (await served.consume(org["id"], 50_000))["items"][0]["source"] == "allowance"
    assert (await served.consume(org["id"], 1_000))["items"][0]["source"] == "on_demand"
    ctx = served.ctx

    async def report() -> list[dict[str, Any]]:
        await flush_once(ctx, served.app.state.flusher)
        await report_overage({"app": ctx})
        events = await served.call(served.fake.meter_events)
        return [e for e in events if e["payload"]["stripe_customer_id"] == sub["customer"]]

    first = await report()
    assert [e["payload"]["value"] for e in first] == ["29"]  # 1,000 errors x 0.029 cents
    assert first[0]["event_name"] == "tollgate_on_demand_cents"
    assert org["id"] in first[0]["identifier"]
    assert await report() == first  # nothing new, nothing sent again

    await served.consume(org["id"], 500)
    second = await report()
    assert [e["payload"]["value"] for e in second] == ["29", "14"]  # 1,500 x 0.029 = 43 in all

    # Stripe accepted the last report but its acknowledgement was lost (our record is gone):
    # the retry carries the same identifier, Stripe refuses it, nothing is billed twice.
    async with ctx.sessions() as session:
        await session.execute(
            delete(OverageReport).where(OverageReport.identifier == second[1]["identifier"])
        )
        await session.commit()
    assert await report() == second
    async with ctx.sessions() as session:
        rows = (await session.scalars(select(OverageReport.reported_cents))).all()
    assert 43 in rows
