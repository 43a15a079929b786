"""The Lua scripts, run directly against a real Redis (as Sentry's test_is_rate_limited_script)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis

from app.infra.embedded_redis import EmbeddedRedis
from app.metering import keys
from app.metering.config import QuotaConfig, SpikeBucket
from app.metering.meter import CONSUME, REFUND

NOW = 1_800_000_000.0
PS, PE = int(NOW) - 86_400, int(NOW) + 86_400 * 29


@pytest.fixture
async def r(redis_server: EmbeddedRedis) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


def config(org: str, **kw: Any) -> QuotaConfig:
    base: dict[str, Any] = {
        "organization_id": org,
        "version": 1,
        "suspended": False,
        "period_start": PS,
        "period_end": PE,
        "limits": {"error": 10, "attachment": -1},
    }
    base.update(kw)
    return QuotaConfig(**base)


async def setup(r: aioredis.Redis, cfg: QuotaConfig) -> str:
    await r.set(keys.config_key(cfg.organization_id), cfg.to_redis())
    return cfg.organization_id


def named(answer: list[Any], *names: str) -> dict[str, Any]:
    """A script's MessagePack array answer, status first, as a dict (readable asserts)."""
    return {"s": answer[0], **dict(zip(names, answer[1:], strict=False))}


async def consume(
    r: aioredis.Redis,
    org: str,
    *items: tuple[str, int, str] | tuple[str, int],
    now: float = NOW,
    idem: str = "",
    partial: bool = False,
    lease: str = "",
) -> dict[str, Any]:
    args: list[Any] = [now, 60, "1" if idem else "", 600, "1" if partial else "", lease]
    for it in items:
        args += [it[0], it[1], it[2] if len(it) > 2 else ""]  # type: ignore[misc]
    raw = await r.eval(
        CONSUME.source, 3, keys.config_key(org), keys.usage_key(org), keys.idempotency_key(org, idem), *args
    )
    replayed = raw.startswith(b"R")
    answer = msgspec.msgpack.decode(raw[1:] if replayed else raw)
    out = named(answer, "v", "ps", "pe", "r", "x") if answer[0] == "ok" else named(answer, "pe")
    out["replayed"] = replayed
    return out


async def refund(
    r: aioredis.Redis, org: str, *items: tuple[str, int], period: str = "", lease: str = "", idem: str = ""
) -> dict[str, Any]:
    args: list[Any] = [NOW, 60, "1" if idem else "", 600, period, lease]
    for c, q in items:
        args += [c, q, ""]
    raw = await r.eval(
        REFUND.source, 3, keys.config_key(org), keys.usage_key(org), keys.idempotency_key(org, idem), *args
    )
    return named(msgspec.msgpack.decode(raw[1:] if raw.startswith(b"R") else raw), "ps", "r")


def org_id() -> str:
    return uuid.uuid4().hex


async def test_miss_without_config(r: aioredis.Redis) -> None:
    assert (await consume(r, org_id(), ("error", 1)))["s"] == "miss"


async def test_first_unit_over_the_limit_is_refused_and_nothing_counted(r: aioredis.Redis) -> None:
    org = await setup(r, config(org_id()))
    ok = await consume(r, org, ("error", 9))
    assert ok["r"] == [[1, 9, "a", 1, 10, "", 0]]
    over = await consume(r, org, ("error", 2))
    acc, granted, _src, remaining, limit, reason, retry = over["r"][0]
    assert (acc, granted, remaining, limit, reason) == (0, 0, 1, 10, "usage_exceeded")
    assert retry == pytest.approx(PE - NOW)
    last = await consume(r, org, ("error", 1))
    assert last["r"][0][:5] == [1, 1, "a", 0, 10]
    assert last["x"] == [["error", "usage_exceeded", PE - NOW]]  # announced on success too
    counters = await r.hgetall(keys.usage_key(org))
    assert counters[f"{PS}:u:error".encode()] == b"10"
    assert counters[f"{PS}:x:error:usage_exceeded".encode()] == b"2"


async def test_items_apply_in_order_and_unlimited_is_counted(r: aioredis.Redis) -> None:
    org = await setup(r, config(org_id()))
    out = await consume(r, org, ("error", 6), ("error", 6), ("error", 4), ("attachment", 10**9))
    assert [i[0] for i in out["r"]] == [1, 0, 1, 1]
    assert out["r"][3][3] == -1 and out["r"][3][4] == -1  # unlimited
    assert int(await r.hget(keys.usage_key(org), f"{PS}:u:attachment")) == 10**9


async def test_partial_grant_only_when_asked(r: aioredis.Redis) -> None:
    org = await setup(r, config(org_id()))
    assert (await consume(r, org, ("error", 300)))["r"][0][0] == 0
    part = await consume(r, org, ("error", 300), partial=True)
    assert part["r"][0][:4] == [1, 10, "a", 0]


async def test_zero_quantity_is_a_pure_check(r: aioredis.Redis) -> None:
    org = await setup(r, config(org_id(), limits={"error": 1}))
    assert (await consume(r, org, ("error", 0)))["r"][0][0] == 1
    await consume(r, org, ("error", 1))
    check = await consume(r, org, ("error", 0))
    assert check["r"][0][0] == 0 and check["r"][0][5] == "usage_exceeded"
    assert int(await r.hget(keys.usage_key(org), f"{PS}:u:error")) == 1


async def test_on_demand_spills_until_the_budget_is_spent(r: aioredis.Redis) -> None:
    # 10 included, then 1 cent per unit with a 5 cent budget: 15 units in all
    org = await setup(r, config(org_id(), on_demand_cents={"error": 1.0}, on_demand_budget_cents=5))
    first = await consume(r, org, ("error", 12))
    assert first["r"][0][:4] == [1, 12, "o", 0]
    assert (await consume(r, org, ("error", 4)))["r"][0][5] == "on_demand_exhausted"
    assert (await consume(r, org, ("error", 3)))["r"][0][0] == 1
    u = await r.hgetall(keys.usage_key(org))
    assert (u[f"{PS}:u:error".encode()], u[f"{PS}:o:error".encode()]) == (b"15", b"5")


async def test_no_budget_means_a_hard_stop(r: aioredis.Redis) -> None:
    org = await setup(r, config(org_id(), on_demand_cents={"error": 1.0}))
    await consume(r, org, ("error", 10))
    assert (await consume(r, org, ("error", 1)))["r"][0][5] == "usage_exceeded"


async def test_spike_bucket_limits_bursts_and_refills(r: aioredis.Redis) -> None:
    org = await setup(
        r, config(org_id(), limits={"error": 1000}, spike={"error": SpikeBucket(rate=2.0, capacity=20)})
    )
    assert (await consume(r, org, ("error", 20)))["r"][0][0] == 1
    spike = (await consume(r, org, ("error", 5)))["r"][0]
    assert spike[5] == "spike_protection" and spike[6] == pytest.approx(2.5)
    assert (await consume(r, org, ("error", 5), now=NOW + 2.5))["r"][0][0] == 1


async def test_paused_spike_protection_lets_a_planned_load_through(r: aioredis.Redis) -> None:
    org = await setup(
        r,
        config(
            org_id(),
            limits={"error": 1000},
            spike_paused_until=int(NOW) + 60,
            spike={"error": SpikeBucket(rate=1.0, capacity=5)},
        ),
    )
    assert (await consume(r, org, ("error", 500)))["r"][0][0] == 1
    assert (await consume(r, org, ("error", 6), now=NOW + 61))["r"][0][5] == "spike_protection"


async def test_project_cap_is_checked_in_the_same_call(r: aioredis.Redis) -> None:
    org = await setup(r, config(org_id(), limits={"error": 100}, project_caps={"web": {"error": 3}}))
    assert (await consume(r, org, ("error", 3, "web")))["r"][0][0] == 1
    capped = (await consume(r, org, ("error", 1, "web")))["r"][0]
    assert capped[5] == "project_cap"
    assert (await consume(r, org, ("error", 50, "api")))["r"][0][0] == 1


async def test_suspended_org_is_refused_everything(r: aioredis.Redis) -> None:
    org = await setup(r, config(org_id(), suspended=True))
    out = await consume(r, org, ("error", 1))
    assert out["r"][0][5] == "suspended"
    assert {c for c, *_ in out["x"]} == {"error", "attachment"}


async def test_stale_period_asks_for_a_refresh_and_a_new_period_starts_from_zero(
    r: aioredis.Redis,
) -> None:
    org = await setup(r, config(org_id()))
    await consume(r, org, ("error", 10))
    assert (await consume(r, org, ("error", 1), now=PE + 1))["s"] == "stale"
    nxt = config(org, period_start=PE, period_end=PE + 30 * 86_400)
    await setup(r, nxt)
    fresh = await consume(r, org, ("error", 4), now=PE + 1)
    assert fresh["ps"] == PE and fresh["r"][0][:4] == [1, 4, "a", 6]
    # the previous period is kept for late refunds
    refunded = await refund(r, org, ("error", 3), period=str(PS))
    assert refunded == {"s": "ok", "ps": PS, "r": [["error", 3]]}
    assert int(await r.hget(keys.usage_key(org), f"{PS}:u:error")) == 7
    assert int(await r.hget(keys.usage_key(org), f"{PE}:u:error")) == 4
    assert (await refund(r, org, ("error", 1), period="12345"))["s"] == "unknown_period"


async def test_idempotency_key_replays_the_first_decision(r: aioredis.Redis) -> None:
    org = await setup(r, config(org_id()))
    first = await consume(r, org, ("error", 6), idem="batch-1")
    again = await consume(r, org, ("error", 6), idem="batch-1")
    assert again["replayed"] and again["r"] == first["r"]
    assert int(await r.hget(keys.usage_key(org), f"{PS}:u:error")) == 6


async def test_refund_comes_off_on_demand_first_and_never_below_zero(r: aioredis.Redis) -> None:
    org = await setup(r, config(org_id(), on_demand_cents={"error": 1.0}, on_demand_budget_cents=100))
    await consume(r, org, ("error", 14))
    out = await refund(r, org, ("error", 3))
    assert out["r"] == [["error", 3]]
    u = await r.hgetall(keys.usage_key(org))
    assert (u[f"{PS}:u:error".encode()], u[f"{PS}:o:error".encode()]) == (b"11", b"1")
    assert (await refund(r, org, ("error", 500)))["r"] == [["error", 11]]
    assert (await refund(r, org, ("error", 1), idem="r1"))["r"] == [["error", 0]]


async def test_lease_returns_are_exact_and_once(r: aioredis.Redis) -> None:
    org = await setup(r, config(org_id()))
    lease = await consume(r, org, ("error", 8), partial=True, lease="L1")
    assert lease["r"][0][1] == 8
    second = await consume(r, org, ("error", 8), partial=True, lease="L2")
    assert second["r"][0][1] == 2  # never more than the limit in total
    assert (await refund(r, org, ("", 5), lease="L1"))["r"] == [["error", 5]]
    assert (await refund(r, org, ("", 5), lease="L1"))["s"] == "unknown_lease"
    assert int(await r.hget(keys.usage_key(org), f"{PS}:u:error")) == 5
