"""The ingest client, as an ingest service uses it, against the running app."""

from __future__ import annotations

import asyncio
from typing import Any

from app.metering.client import LeasingMeter, TollgateClient, TollgateUnavailable
from tests.conftest import ADMIN_TOKEN, new_org


def client_for(http: Any) -> TollgateClient:
    return TollgateClient(str(http.base_url), ADMIN_TOKEN)


async def replay_used(http: Any, org: dict[str, Any]) -> int:
    body = (await http.get(f"/v1/organizations/{org['id']}/usage")).json()
    return next(c["used"] for c in body["categories"] if c["category"] == "replay")


async def test_consume_forwards_sentry_headers(sqlite_client: Any) -> None:
    org = await new_org(sqlite_client)
    async with client_for(sqlite_client) as tg:
        ok = await tg.consume(org["id"], [("replay", 50)])
        assert ok.accepted and ok.rate_limits == "300:replay:organization:usage_exceeded"
        denied = await tg.consume(org["id"], [("replay", 1)])
        assert not denied.accepted and denied.retry_after == 300
        assert await tg.refund(org["id"], [("replay", 2)], period_start=ok.period_start) == {"replay": 2}


async def test_leasing_meters_racing_grant_exactly_the_limit(sqlite_client: Any) -> None:
    """Three ingest processes share a free org's 50 replays, deciding locally."""
    org = await new_org(sqlite_client)
    clients = [client_for(sqlite_client) for _ in range(3)]
    meters = [LeasingMeter(c, block=20, expected_clients=3) for c in clients]

    async def ingest(meter: LeasingMeter) -> int:
        accepted = 0
        for _ in range(40):
            accepted += await meter.consume(org["id"], "replay")
            await asyncio.sleep(0)
        return accepted

    accepted = await asyncio.gather(*(ingest(m) for m in meters))
    assert sum(accepted) == 50  # never over, and nothing held back once all is asked for
    for m in meters:
        await m.close()
    assert await replay_used(sqlite_client, org) == 50
    for c in clients:
        await c.aclose()


async def test_unused_lease_units_go_back(sqlite_client: Any) -> None:
    org = await new_org(sqlite_client)
    async with client_for(sqlite_client) as tg:
        meter = LeasingMeter(tg, block=30)
        for _ in range(7):
            assert await meter.consume(org["id"], "replay")
        assert await replay_used(sqlite_client, org) == 30  # the block is held
        await meter.close()
        assert await replay_used(sqlite_client, org) == 7  # exactly what was used


async def test_blocks_shrink_near_the_limit(sqlite_client: Any) -> None:
    org = await new_org(sqlite_client)
    async with client_for(sqlite_client) as tg:
        meter = LeasingMeter(tg, block=20, expected_clients=2)
        sizes = []
        for _ in range(50):
            assert await meter.consume(org["id"], "replay")
            lease = meter._leases[(org["id"], "replay")]
            if not sizes or sizes[-1] != lease.granted or lease.left == lease.granted - 1:
                sizes.append(lease.granted)
        assert sizes[0] == 20 and sizes[-1] < 20 and sizes == sorted(sizes, reverse=True)
        assert not await meter.consume(org["id"], "replay")
        await meter.close()
        assert await replay_used(sqlite_client, org) == 50


async def test_bounded_fail_open_spends_only_what_is_held(sqlite_client: Any) -> None:
    org = await new_org(sqlite_client)
    async with client_for(sqlite_client) as tg:
        meter = LeasingMeter(tg, block=10, when_unavailable="deny")
        assert await meter.consume(org["id"], "replay")
    # the client's connection is gone (Tollgate unreachable): the held lease keeps working
    dead = TollgateClient("http://127.0.0.1:9", ADMIN_TOKEN, timeout=0.5)
    meter.client = dead
    decisions = [await meter.consume(org["id"], "replay") for _ in range(12)]
    assert decisions.count(True) == 9 and meter.degraded
    try:
        await dead.lease(org["id"], "replay", 1)
        raise AssertionError("expected TollgateUnavailable")
    except TollgateUnavailable:
        pass
    await dead.aclose()


def test_local_decisions_count_exactly_and_stop_at_the_lease() -> None:
    from app.metering.client import Lease

    meter = LeasingMeter(TollgateClient("http://127.0.0.1:9", "x"))
    meter._leases[("o", "error")] = Lease("o", "error", "L", 1_000, 1_000, None)
    decisions = [meter.try_local("o", "error") for _ in range(1_001)]
    assert decisions.count(True) == 1_000 and decisions[-1] is None  # the next one must ask
    assert meter.accepted == 1_000


async def test_a_busy_org_gets_growing_blocks_and_stays_exact(sqlite_client: Any) -> None:
    """Spent within a second, each block doubles (up to max_block), so a busy ingest process makes
    a round trip per ~second instead of per block; what it holds unused still goes back."""
    org = await new_org(sqlite_client)  # free: 5,000 errors
    async with client_for(sqlite_client) as tg:
        meter = LeasingMeter(tg, block=10, max_block=80, expected_clients=1)
        assert all([await meter.consume(org["id"], "error") for _ in range(1_000)])
        await meter.close()
    grants = [lease.granted for lease in meter._spent]
    assert grants[:4] == [10, 20, 40, 80] and max(grants) == 80
    assert len(grants) < 20  # 1,000 events at a fixed block of 10 would be 100 leases
    body = (await sqlite_client.get(f"/v1/organizations/{org['id']}/usage")).json()
    assert next(c["used"] for c in body["categories"] if c["category"] == "error") == 1_000
