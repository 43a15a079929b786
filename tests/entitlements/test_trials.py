"""Trials over HTTP with a controllable clock: they apply to the meter at once, end exactly on time
(by the job, across a restart), once per plan, and give way to a paid plan."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from app.clock import ManualClock
from app.context import AppContext
from app.db.models import Organization
from app.entitlements.services import end_trial_for_paid_plan
from app.entitlements.tasks import end_due_trials
from app.infra.embedded_redis import EmbeddedRedis
from app.metering.keys import config_key
from app.orgs.services import OrganizationService
from tests.conftest import new_org

Client = AsyncTestClient[Any]
T = TypeVar("T")


@pytest.fixture(scope="module")
async def clock() -> ManualClock:
    return ManualClock(datetime.now(UTC))


@pytest.fixture(scope="module")
async def app_client(make_client: Any, clock: ManualClock) -> AsyncIterator[Client]:
    async with make_client(clock=clock) as c:
        yield c


@pytest.fixture
async def c(app_client: Client, clock: ManualClock) -> Client:
    clock.set(datetime.now(UTC))  # each test starts at the real time (Redis expiries are real)
    return app_client


def ctx_of(client: Client) -> AppContext:
    return client.app.state.ctx  # type: ignore[no-any-return]


async def in_app(client: Client, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Run ``fn`` on the app's event loop: the test's own when the app is served in it, else the
    test client's portal thread."""
    portal = getattr(client, "blocking_portal", None)
    if portal is None:
        return await fn(*args)
    return await asyncio.to_thread(portal.call, fn, *args)


async def run_job(client: Client) -> int:
    """What the cron does every second: the trials job, against the running app's context."""
    return await in_app(client, end_due_trials, {"app": ctx_of(client)})


async def consume(client: Client, org_id: str, quantity: int) -> dict[str, Any]:
    resp = await client.post(
        "/v1/quotas/consume",
        json={"organization_id": org_id, "items": [{"category": "error", "quantity": quantity}]},
    )
    assert resp.status_code == 200, resp.text
    return resp.json()["items"][0]  # type: ignore[no-any-return]


async def check(client: Client, org_id: str, feature: str) -> dict[str, Any]:
    resp = await client.post("/v1/entitlements/check", json={"organization_id": org_id, "feature": feature})
    return resp.json()  # type: ignore[no-any-return]


async def entitlements(client: Client, org_id: str) -> dict[str, Any]:
    return (await client.get(f"/v1/organizations/{org_id}/entitlements")).json()  # type: ignore[no-any-return]


async def audit(client: Client, org_id: str, kind: str) -> list[dict[str, Any]]:
    items = (await client.get(f"/v1/organizations/{org_id}/audit", params={"limit": 200})).json()["items"]
    return [e for e in items if e["kind"] == kind]


def parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


async def test_a_trial_applies_at_once_and_ends_exactly_on_time(c: Client, clock: ManualClock) -> None:
    org = await new_org(c)
    assert (await consume(c, org["id"], 5_000))["accepted"] is True
    refused = await consume(c, org["id"], 1)
    assert refused["accepted"] is False and refused["reason"] == "usage_exceeded"

    started = await c.post(f"/v1/organizations/{org['id']}/trial", json={"plan": "team"})
    assert started.status_code == 201, started.text
    trial = started.json()
    ends_at = parse(trial["ends_at"])
    assert trial["plan"] == "team" and trial["returns_to"] == "free"
    assert ends_at == clock.now() + timedelta(days=14)  # the default length

    # the meter follows at once: beyond the free limit, within the team one
    during = await consume(c, org["id"], 2_000)
    assert during["accepted"] is True and during["limit"] == 50_000
    assert (await check(c, org["id"], "integrations"))["allowed"] is True
    read = await entitlements(c, org["id"])
    assert read["plan"] == "team" and read["limits"]["members"]["value"] is None
    assert read["trial"]["plan"] == "team" and read["trial"]["returns_to"] == "free"
    assert parse(read["trial"]["ends_at"]) == ends_at and read["trial"]["started_at"] is not None
    assert (await c.get(f"/v1/organizations/{org['id']}")).json()["quotas"]["error"] == 50_000
    [event] = await audit(c, org["id"], "trial.started")
    assert event["detail"]["changes"]["features_added"] == ["integrations"]
    assert event["detail"]["changes"]["members"] == {"from": 1, "to": None}

    # one second before the end the job leaves it alone
    clock.set(ends_at - timedelta(seconds=1))
    await run_job(c)
    assert (await consume(c, org["id"], 1))["accepted"] is True
    assert (await entitlements(c, org["id"]))["trial"] is not None

    # at the end the read is back on free even before the job ran (a pure function of the clock)
    clock.set(ends_at)
    read = await entitlements(c, org["id"])
    assert read["plan"] == "free" and read["trial"] is None
    assert read["limits"]["members"]["value"] == 1
    await run_job(c)
    after = await consume(c, org["id"], 1)
    assert after["accepted"] is False and after["reason"] == "usage_exceeded" and after["limit"] == 5_000
    assert await check(c, org["id"], "integrations") == {
        "allowed": False,
        "reason": "not_entitled",
        "upgrade_to": "team",
    }
    await run_job(c)  # running again (or the cron racing it) ends nothing twice
    [ended] = await audit(c, org["id"], "trial.ended")
    assert ended["detail"]["outcome"] == "expired" and parse(ended["detail"]["ended_at"]) == ends_at
    assert ended["detail"]["changes"]["features_removed"] == ["integrations"]

    again = await c.post(f"/v1/organizations/{org['id']}/trial", json={"plan": "team"})
    assert again.status_code == 409 and again.json()["error"] == "trial_already_used"
    other = await c.post(f"/v1/organizations/{org['id']}/trial", json={"plan": "business", "days": 3})
    assert other.status_code == 201 and parse(other.json()["ends_at"]) == clock.now() + timedelta(days=3)


async def test_the_meter_config_expires_when_the_trial_ends(
    c: Client, clock: ManualClock, redis_server: EmbeddedRedis
) -> None:
    """So the meter and the check reload it at the end even between job runs (Redis expiries run
    on real time: the clock starts at the real time here, so the trial ends 14 real days ahead)."""
    org = await new_org(c)
    redis = Redis.from_url(redis_server.url)
    try:
        started = await c.post(f"/v1/organizations/{org['id']}/trial", json={"plan": "team"})
        ends_at = parse(started.json()["ends_at"])
        to_end = (ends_at - datetime.now(UTC)).total_seconds()
        assert abs(await redis.pttl(config_key(org["id"])) / 1000 - to_end) < 30

        # another change re-publishes the config with the period's expiry (a month and a day away)
        await c.patch(f"/v1/organizations/{org['id']}", json={"name": "renamed"})
        await c.patch(f"/v1/organizations/{org['id']}", json={"on_demand_budget_cents": 100})
        assert await redis.pttl(config_key(org["id"])) / 1000 > to_end + 86_400
        # the job pins it again once the end is within the lookahead (an hour)
        clock.set(ends_at - timedelta(minutes=30))
        await run_job(c)
        assert abs(await redis.pttl(config_key(org["id"])) / 1000 - to_end) < 30
        assert (await entitlements(c, org["id"]))["trial"] is not None  # still running
    finally:
        await redis.aclose()


async def test_a_trial_ends_on_time_across_a_restart(make_client: Any) -> None:
    clock = ManualClock(datetime.now(UTC))
    async with make_client(clock=clock) as first:
        org = await new_org(first)
        started = await first.post(f"/v1/organizations/{org['id']}/trial", json={"plan": "business"})
        assert started.status_code == 201
        ends_at = parse(started.json()["ends_at"])
    clock.set(ends_at + timedelta(seconds=1))
    async with make_client(clock=clock) as second:  # a new process: nothing of the first in memory
        await run_job(second)
        assert (await check(second, org["id"], "advanced_analytics"))["allowed"] is False
        assert (await entitlements(second, org["id"]))["plan"] == "free"
        assert len(await audit(second, org["id"], "trial.ended")) == 1


async def test_checkout_during_a_trial_ends_it_for_the_paid_plan(c: Client) -> None:
    org = await new_org(c)
    assert (await c.post(f"/v1/organizations/{org['id']}/trial", json={"plan": "team"})).status_code == 201
    ctx = ctx_of(c)

    async def checkout_completed() -> tuple[bool, bool]:  # what billing does for a paid Checkout
        async with ctx.sessions() as session:
            row = await session.get(Organization, UUID(org["id"]))
            assert row is not None
            await OrganizationService(session, ctx).change_plan(
                row, "business", "stripe", billing_source="stripe"
            )
            return (
                await end_trial_for_paid_plan(session, ctx, row),
                await end_trial_for_paid_plan(session, ctx, row),
            )

    assert await in_app(c, checkout_completed) == (True, False)  # ended once, then idempotent
    read = await entitlements(c, org["id"])
    assert read["plan"] == "business" and read["trial"] is None
    assert (await check(c, org["id"], "custom_dashboards"))["allowed"] is True
    [ended] = await audit(c, org["id"], "trial.ended")
    assert ended["detail"]["outcome"] == "converted" and ended["actor"] == "system:billing"
    await run_job(c)
    assert len(await audit(c, org["id"], "trial.ended")) == 1


async def test_any_plan_change_voids_a_running_trial_at_once(c: Client) -> None:
    org = await new_org(c)
    await c.post(f"/v1/organizations/{org['id']}/trial", json={"plan": "business"})
    assert (await check(c, org["id"], "advanced_analytics"))["allowed"] is True
    moved = await c.post(f"/v1/organizations/{org['id']}/plan", json={"plan": "team"})
    assert moved.status_code == 200
    # team from now on, not business-on-trial, before any job ran
    assert (await check(c, org["id"], "advanced_analytics"))["allowed"] is False
    read = await entitlements(c, org["id"])
    assert read["plan"] == "team" and read["trial"] is None
    await run_job(c)
    [ended] = await audit(c, org["id"], "trial.ended")
    assert ended["detail"]["outcome"] == "plan_changed" and ended["detail"]["returns_to"] == "team@v1"


async def test_trials_that_are_not_available(c: Client) -> None:
    ctx = ctx_of(c)
    free = await new_org(c)
    url = f"/v1/organizations/{free['id']}/trial"

    for body, status, code in [
        ({"plan": "enterprise"}, 409, "trial_not_available"),
        ({"plan": "free"}, 409, "trial_not_available"),
        ({"plan": "platinum"}, 422, "unknown_plan"),
        ({"plan": "team", "days": 91}, 422, "trial_too_long"),
        ({"plan": "team", "days": 0}, 400, "validation_error"),
        ({"plan": "team", "card": "4242"}, 400, "validation_error"),
    ]:
        resp = await c.post(url, json=body)
        assert (resp.status_code, resp.json()["error"]) == (status, code), (body, resp.text)
    assert await audit(c, free["id"], "trial.started") == []  # none of those changed anything

    assert (await c.post(url, json={"plan": "team"})).status_code == 201
    busy = await c.post(url, json={"plan": "business"})
    assert busy.status_code == 409 and busy.json()["error"] == "trial_in_progress"

    enterprise = await new_org(c, plan="enterprise")
    resp = await c.post(f"/v1/organizations/{enterprise['id']}/trial", json={"plan": "business"})
    assert resp.status_code == 409 and "contract" in resp.json()["detail"]

    team = await new_org(c, plan="team")
    resp = await c.post(f"/v1/organizations/{team['id']}/trial", json={"plan": "team"})
    assert resp.status_code == 409 and "not above" in resp.json()["detail"]

    market = await new_org(c)

    async def provisioned_by_marketplace() -> None:
        async with ctx.sessions() as session:
            row = await session.get(Organization, UUID(market["id"]))
            assert row is not None
            await OrganizationService(session, ctx).change_plan(
                row, "team", "marketplace:heroku", billing_source="marketplace"
            )

    await in_app(c, provisioned_by_marketplace)
    resp = await c.post(f"/v1/organizations/{market['id']}/trial", json={"plan": "business"})
    assert resp.status_code == 409 and "marketplace" in resp.json()["detail"]
