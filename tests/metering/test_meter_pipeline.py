"""The Meter's own pipeline to Redis (one write of many EVALSHAs, replies read in order), against a
real Redis: what it sends is what redis-py would send, a forgotten script or an error reply of one
call does not disturb the others, and the connection stays usable."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import Connection
from redis.exceptions import ResponseError

from app.infra.embedded_redis import EmbeddedRedis
from app.metering import keys
from app.metering.config import QuotaConfig
from app.metering.meter import CONSUME, Meter, Script, _Batcher, _pack_evalsha
from app.metering.results import Item
from app.settings import MeterSettings


class Source:
    def __init__(self) -> None:
        self.loads = 0

    async def load(self, organization_id: str) -> tuple[QuotaConfig, dict[str, int]]:
        self.loads += 1
        now = int(time.time())
        return QuotaConfig(organization_id, 1, False, now - 60, now + 86_400, {"error": 100}), {}


@pytest.fixture
async def r(redis_server: EmbeddedRedis) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


def test_packs_exactly_what_redis_py_packs() -> None:
    conn = Connection()
    keys_ = ["tg:{org-ü}:qc", "tg:{org-ü}:u", "tg:{org-ü}:idem:"]
    args: list[Any] = [1_800_000_000.25, 86_400, "", 600, "1", "lease-1", "error", 7, "", "replay", 0, "web"]
    ours = _pack_evalsha(CONSUME, keys_, args)
    theirs = b"".join(conn.pack_command("EVALSHA", CONSUME.sha, 3, *keys_, *args))
    assert ours == theirs


async def test_concurrent_calls_survive_a_flushed_script_cache(r: aioredis.Redis) -> None:
    """Redis forgot the script (a restart, SCRIPT FLUSH): every call of the pipeline got NOSCRIPT;
    the meter loads it once and retries them; each unit is counted once."""
    meter = Meter(r, Source(), MeterSettings())
    org = uuid.uuid4().hex
    assert (await meter.consume(org, [Item("error", 1)])).all_accepted
    await r.script_flush()
    decisions = await asyncio.gather(*(meter.consume(org, [Item("error", 1)]) for _ in range(60)))
    assert all(d.all_accepted and not d.degraded for d in decisions)
    remaining = sorted(d.items[0].remaining for d in decisions)
    assert remaining == list(range(39, 99))  # 100 - 1 - 60 .. 100 - 1 - 1: each counted once


async def test_an_error_reply_is_that_call_s_answer_only(r: aioredis.Redis) -> None:
    failing_source = "return redis.error_reply('boom')"
    failing = Script("failing", failing_source, hashlib.sha1(failing_source.encode()).hexdigest())
    echo_source = "return ARGV[1]"
    echo = Script("echo", echo_source, hashlib.sha1(echo_source.encode()).hexdigest())
    await r.script_load(failing.source)
    await r.script_load(echo.source)
    batcher = _Batcher(r)
    calls = [batcher.call(echo if i % 3 else failing, ["k"], [f"v{i}"]) for i in range(9)]
    results = await asyncio.gather(*calls, return_exceptions=True)
    for i, result in enumerate(results):
        if i % 3:
            assert result == f"v{i}".encode()
        else:
            assert isinstance(result, ResponseError) and "boom" in str(result)
    assert await batcher.call(echo, ["k"], ["after"]) == b"after"  # the connection is in sync


async def test_answers_stored_before_the_messagepack_format_still_replay(r: aioredis.Redis) -> None:
    """An idempotency key whose first answer was stored by the previous build (JSON) is answered
    from it after an upgrade: the retry is not counted again."""
    meter = Meter(r, Source(), MeterSettings())
    org = uuid.uuid4().hex
    assert (await meter.consume(org, [Item("error", 1)])).items[0].remaining == 99  # config loaded
    old_consume = b'{"s":"ok","v":1,"ps":100,"pe":200,"r":[[1,5,"a",42,100,"",0]],"x":[]}'
    await r.set(keys.idempotency_key(org, "retry-1"), old_consume)
    again = await meter.consume(org, [Item("error", 5)], idempotency_key="retry-1")
    assert again.replayed and again.items[0].accepted and again.items[0].remaining == 42
    assert (again.period_start, again.period_end) == (100, 200)
    old_refund = b'{"s":"ok","ps":100,"r":[["error",3]]}'
    await r.set(keys.idempotency_key(org, "refund-1"), old_refund)
    refunded = await meter.refund(org, [Item("error", 3)], idempotency_key="refund-1")
    assert (refunded.period_start, refunded.refunded) == (100, {"error": 3})
    assert (await meter.consume(org, [Item("error", 1)])).items[0].remaining == 98  # nothing else counted
