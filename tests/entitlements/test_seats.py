"""Seats: counted exactly in Redis under concurrency, idempotent, kept across a downgrade, durable."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from app.entitlements.store import SeatStore, seats_key
from app.infra.embedded_redis import EmbeddedRedis
from app.metering.config import QuotaConfig
from app.metering.keys import config_key
from tests.conftest import new_org

Client = AsyncTestClient[Any]


@pytest.fixture
async def redis(redis_server: EmbeddedRedis) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


async def seat(client: Client, org_id: str, member: str, action: str = "join", **extra: Any) -> Any:
    return await client.post(
        f"/v1/organizations/{org_id}/seats", json={"member_id": member, "action": action, **extra}
    )


async def members(client: Client, org_id: str) -> dict[str, Any]:
    read = (await client.get(f"/v1/organizations/{org_id}/entitlements")).json()
    return read["limits"]["members"]  # type: ignore[no-any-return]


async def test_concurrent_joins_at_the_limit_admit_exactly_the_limit(client: Client) -> None:
    org = await new_org(client, plan="free")
    await client.patch(f"/v1/organizations/{org['id']}", json={"overrides": {"members": 3}})
    answers = await asyncio.gather(*(seat(client, org["id"], f"user-{i}") for i in range(25)))
    codes = sorted(r.status_code for r in answers)
    assert codes == [200] * 3 + [409] * 22
    refused = next(r for r in answers if r.status_code == 409).json()
    assert refused["error"] == "seat_limit_reached"
    assert "allows 3 members" in refused["detail"] and "has 3" in refused["detail"]
    assert [r.json()["used"] for r in answers if r.status_code == 200] != []
    state = await members(client, org["id"])
    assert state["value"] == 3 and state["used"] == 3 and state["over_limit"] is False
    # members pinned by an override: an upgrade would not add seats, so none is offered
    assert state["upgrade_to"] is None


async def test_a_refused_join_names_the_limit_and_the_upgrade(client: Client) -> None:
    org = await new_org(client, plan="free")
    first = await seat(client, org["id"], "alice")
    assert first.status_code == 200
    assert first.json() | {"organization_id": None} == {
        "organization_id": None,
        "member_id": "alice",
        "action": "join",
        "changed": True,
        "used": 1,
        "limit": 1,
        "replayed": False,
    }
    second = await seat(client, org["id"], "bob")
    assert second.status_code == 409
    body = second.json()
    assert body["error"] == "seat_limit_reached"
    assert "free plan allows 1 members" in body["detail"] and "upgrade_to: team" in body["detail"]
    assert (await members(client, org["id"]))["upgrade_to"] == "team"


async def test_seat_changes_are_idempotent(client: Client) -> None:
    org = await new_org(client, plan="team")
    key = uuid.uuid4().hex
    first = (await seat(client, org["id"], "a", idempotency_key=key)).json()
    assert first["changed"] is True and first["used"] == 1 and first["replayed"] is False
    retry = (await seat(client, org["id"], "a", idempotency_key=key)).json()
    assert retry["replayed"] is True and retry["used"] == 1
    again = (await seat(client, org["id"], "a")).json()
    assert again["changed"] is False and again["used"] == 1 and again["limit"] is None
    left = (await seat(client, org["id"], "a", "leave")).json()
    assert left["changed"] is True and left["used"] == 0
    # a late retry of the first join replays its answer and does not add the member back
    late = (await seat(client, org["id"], "a", idempotency_key=key)).json()
    assert late["replayed"] is True
    assert (await members(client, org["id"]))["used"] == 0
    gone = (await seat(client, org["id"], "a", "leave")).json()
    assert gone["changed"] is False and gone["used"] == 0
    bad = await seat(client, org["id"], "", "join")
    assert bad.status_code == 400
    bad_action = await seat(client, org["id"], "a", "promote")
    assert bad_action.status_code == 400


async def test_a_downgrade_keeps_existing_members_and_refuses_new_ones(client: Client) -> None:
    org = await new_org(client, plan="team")
    for m in ("a", "b", "c"):
        assert (await seat(client, org["id"], m)).status_code == 200
    resp = await client.post(f"/v1/organizations/{org['id']}/plan", json={"plan": "free"})
    assert resp.status_code == 200, resp.text

    read = (await client.get(f"/v1/organizations/{org['id']}/entitlements")).json()
    assert read["limits"]["members"] == {
        "value": 1,
        "unit": "members",
        "used": 3,
        "over_limit": True,
        "upgrade_to": "team",
    }
    assert len(read["notices"]) == 1 and "3 members exceed the plan's limit of 1" in read["notices"][0]

    assert (await seat(client, org["id"], "d")).status_code == 409
    existing = await seat(client, org["id"], "a")
    assert existing.status_code == 200 and existing.json()["changed"] is False
    await seat(client, org["id"], "b", "leave")
    await seat(client, org["id"], "c", "leave")
    assert (await seat(client, org["id"], "d")).status_code == 409  # 1 of 1 still
    await seat(client, org["id"], "a", "leave")
    assert (await seat(client, org["id"], "d")).status_code == 200
    final = await members(client, org["id"])
    assert final["used"] == 1 and final["over_limit"] is False


async def test_a_lost_seat_set_is_rebuilt_from_the_database(client: Client, redis: Redis) -> None:
    org = await new_org(client, plan="team")
    for m in ("x", "y", "z"):
        await seat(client, org["id"], m)
    await seat(client, org["id"], "y", "leave")
    await redis.delete(seats_key(org["id"]), config_key(org["id"]))  # Redis lost this org's keys
    assert (await members(client, org["id"]))["used"] == 2
    assert {m.decode() for m in await redis.smembers(seats_key(org["id"]))} == {"", "x", "z"}
    again = (await seat(client, org["id"], "x")).json()
    assert again["changed"] is False and again["used"] == 2


def seat_config(org: str, members: int) -> bytes:
    """A materialized config with this member limit, as the control plane publishes it."""
    return QuotaConfig(org, 1, False, 0, 2_000_000_000, {"error": 10}, members=members).to_redis()


async def test_the_seat_script_against_redis(redis: Redis) -> None:
    """The Lua contract directly: miss, unloaded, load (with the sentinel), full, replay."""
    org = str(uuid.uuid4())
    store = SeatStore(redis, 60)
    assert (await store.call(org, "join", ("a",))).status == "miss"
    await redis.set(config_key(org), seat_config(org, 2))
    assert (await store.call(org, "join", ("a",))).status == "unloaded"
    await store.call(org, "load", ())
    assert (await store.call(org, "count")).used == 0  # loaded and empty: only the sentinel
    await store.call(org, "load", ("ghost",))  # a second load never overwrites a loaded set
    assert (await store.call(org, "count")).used == 0
    a = await store.call(org, "join", ("a",), "k1")
    assert (a.status, a.changed, a.used, a.limit) == ("ok", True, 1, 2)
    assert (await store.call(org, "join", ("a",), "k1")).replayed
    await store.call(org, "join", ("b",))
    full = await store.call(org, "join", ("c",), "k2")
    assert (full.status, full.used, full.limit) == ("full", 2, 2)
    assert (await store.call(org, "join", ("c",), "k2")).status == "full"  # replayed refusal
    await redis.set(config_key(org), seat_config(org, -1))  # unlimited
    assert (await store.call(org, "join", ("c",))).limit is None
    await redis.delete(config_key(org), seats_key(org))
