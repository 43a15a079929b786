"""Losing Redis: counters come back from the usage table; an outage follows the fail policy."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from app.infra.embedded_redis import EmbeddedRedis
from tests.conftest import new_org

BODY = {"items": [{"category": "error", "quantity": 1}]}


async def consume_until_healthy(
    client: Any, org: dict[str, Any], quantity: int, timeout: float = 10.0
) -> dict[str, Any]:
    """Redis just came back: the first calls may still see the old connections fail."""
    deadline = time.monotonic() + timeout
    while True:
        resp = (
            await client.post(
                "/v1/quotas/consume",
                json={"organization_id": org["id"], "items": [{"category": "error", "quantity": quantity}]},
            )
        ).json()
        if not resp.get("degraded") or time.monotonic() > deadline:
            return resp  # type: ignore[no-any-return]
        await asyncio.sleep(0.1)


async def used(client: Any, org: dict[str, Any]) -> int:
    body = (await client.get(f"/v1/organizations/{org['id']}/usage")).json()
    return next(c["used"] for c in body["categories"] if c["category"] == "error")


@pytest.fixture
def own_redis(tmp_path: Path) -> Any:
    server = EmbeddedRedis(tmp_path / "r", appendonly=False).start()
    yield server
    server.kill()


async def test_counters_are_rebuilt_from_the_usage_table_after_redis_loses_everything(
    make_client: Any,
    own_redis: EmbeddedRedis,
    tmp_path: Path,
) -> None:
    async with make_client(redis_url=own_redis.url, flush_interval=0.2) as client:
        org = await new_org(client)
        assert (await consume_until_healthy(client, org, 100))["accepted"] is True
        await asyncio.sleep(0.8)  # at least one flush
        assert (await consume_until_healthy(client, org, 5))["accepted"] is True  # maybe unflushed
        own_redis.kill()  # a crash with no persistence: every key is gone
        restarted = EmbeddedRedis(tmp_path / "r2", port=own_redis.port, appendonly=False).start()
        try:
            after = await consume_until_healthy(client, org, 1)
            assert after["accepted"] is True and not after.get("degraded")
            total = await used(client, org)
            # the flushed 100 survived; at most what came after the last flush is lost
            assert 101 <= total <= 106
            # the limit still holds across the rebuild: 5,000 in all, never more
            left = 5_000 - total
            assert (await consume_until_healthy(client, org, left))["accepted"] is True
            assert (await consume_until_healthy(client, org, 1))["accepted"] is False
        finally:
            restarted.kill()


@pytest.mark.parametrize(("policy", "accepted"), [("closed", False), ("open", True)])
async def test_outage_follows_the_policy_says_degraded_and_recovers(
    make_client: Any,
    own_redis: EmbeddedRedis,
    tmp_path: Path,
    policy: str,
    accepted: bool,
) -> None:
    async with make_client(redis_url=own_redis.url, fail_policy=policy) as client:
        org = await new_org(client)
        assert (await consume_until_healthy(client, org, 10))["accepted"] is True
        own_redis.stop()
        resp = await client.post("/v1/quotas/consume", json={"organization_id": org["id"], **BODY})
        assert resp.status_code == 200
        body = resp.json()
        assert body["degraded"] is True and body["accepted"] is accepted
        assert resp.headers["x-tollgate-degraded"] == "redis-unavailable"
        if not accepted:
            assert body["items"][0]["reason"] == "unavailable"
            assert resp.headers["retry-after"] == "1"
        ready = await client.get("/ready")
        assert ready.status_code == 503
        # Redis comes back (same port): the service heals by itself
        back = EmbeddedRedis(tmp_path / "r3", port=own_redis.port, appendonly=False).start()
        try:
            healed = await consume_until_healthy(client, org, 1)
            assert healed["accepted"] is True and not healed.get("degraded")
            assert (await client.get("/ready")).status_code == 200
        finally:
            back.kill()
