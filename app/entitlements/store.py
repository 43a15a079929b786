"""The Redis side of entitlements: the seat script, the feature read of the materialized config,
and pinning that config to expire when a trial ends.

Nothing here touches the database: features are read from ``tg:{org}:qc`` (the QuotaConfig
the meter reads and the control plane re-publishes after every change), seats live in the set
``tg:{org}:seats`` next to it (same hash tag, same Cluster slot).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any

import msgspec
from redis.exceptions import NoScriptError

from app.metering.config import config_values
from app.metering.keys import PREFIX, config_key
from app.metering.meter import Meter

_decode = msgspec.json.Decoder().decode


def seats_key(org: str) -> str:
    """Set: the org's member ids, plus the sentinel ``""`` once loaded (see ``lua/seats.lua``)."""
    return f"{PREFIX}:{{{org}}}:seats"


def seats_idempotency_key(org: str, key: str) -> str:
    return f"{PREFIX}:{{{org}}}:seats:idem:{key}"


@dataclass(frozen=True, slots=True)
class _Script:
    source: str
    sha: str

    @classmethod
    def load(cls, name: str) -> _Script:
        text = resources.files("app.entitlements").joinpath(f"lua/{name}.lua").read_text()
        return cls(text, hashlib.sha1(text.encode()).hexdigest())  # noqa: S324  (Redis' script id)


SEATS = _Script.load("seats")


@dataclass(frozen=True, slots=True)
class SeatAnswer:
    status: str
    """``ok`` | ``full`` | ``miss`` (no config) | ``unloaded`` (no member set)."""
    changed: bool = False
    used: int = 0
    limit: int | None = None
    """``None`` is unlimited."""
    replayed: bool = False


class SeatStore:
    """Calls ``lua/seats.lua`` for one org."""

    def __init__(self, redis: Any, idempotency_ttl: int) -> None:
        self.redis = redis
        self.ttl = idempotency_ttl

    async def call(
        self, org: str, op: str, members: tuple[str, ...] = (), idempotency_key: str | None = None
    ) -> SeatAnswer:
        keys = [config_key(org), seats_key(org), seats_idempotency_key(org, idempotency_key or "")]
        args = [op, "1" if idempotency_key else "", self.ttl, *members]
        try:
            raw = await self.redis.evalsha(SEATS.sha, len(keys), *keys, *args)
        except NoScriptError:  # a restarted or flushed Redis forgot the script
            await self.redis.script_load(SEATS.source)
            raw = await self.redis.evalsha(SEATS.sha, len(keys), *keys, *args)
        replayed = raw[:1] == b"R"
        data: dict[str, Any] = _decode(raw[1:] if replayed else raw)
        limit = data.get("l")
        return SeatAnswer(
            status=data["s"],
            changed=bool(data.get("c", 0)),
            used=int(data.get("n", 0)),
            limit=None if limit is None or limit < 0 else int(limit),
            replayed=replayed,
        )


class ConfigReader:
    """Reads the feature fields of orgs' configs; the reads of one event-loop turn go out as one
    pipeline (one round trip for all concurrent checks), as the meter does for its scripts."""

    def __init__(self, redis: Any) -> None:
        self.redis = redis
        self._pending: list[tuple[str, asyncio.Future[bytes | None]]] = []

    def read(self, org: str) -> asyncio.Future[bytes | None]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bytes | None] = loop.create_future()
        self._pending.append((org, fut))
        if len(self._pending) == 1:
            loop.call_soon(self._flush)
        return fut

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        task = asyncio.get_running_loop().create_task(self._send(batch))
        _IN_FLIGHT.add(task)
        task.add_done_callback(_IN_FLIGHT.discard)

    async def _send(self, batch: list[tuple[str, asyncio.Future[bytes | None]]]) -> None:
        try:
            if len(batch) == 1:
                results = [await self.redis.get(config_key(batch[0][0]))]
            else:
                pipe = self.redis.pipeline(transaction=False)
                for org, _ in batch:
                    pipe.get(config_key(org))
                results = await pipe.execute()
        except BaseException as exc:  # every waiter gets the error (RedisError -> 503)
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, fut), result in zip(batch, results, strict=True):
            if not fut.done():
                fut.set_result(result)


_IN_FLIGHT: set[asyncio.Task[None]] = set()


async def read_features(meter: Meter, reader: ConfigReader, org: str) -> tuple[str, str, str, int]:
    """``(features, status, plan, plan_version)`` from the org's materialized config: one ``GET``
    (pipelined with concurrent ones); on a miss (or a config past its period) the meter loads it
    from the database, as it does for a consume. ``features`` is the comma-joined enabled set."""
    values = config_values(await reader.read(org), "f", "st", "plan", "pv", "pe")
    if values is None or values[4] <= meter.clock.time():
        cfg = await meter.config(org)
        values = [cfg["f"], cfg["st"], cfg["plan"], cfg["pv"]]
    return values[0], values[1], values[2], int(values[3])


async def pin_config_expiry(redis: Any, org: str, at: datetime) -> None:
    """Make the org's materialized config expire no later than ``at`` (a trial's end): the next
    call after it misses and reloads the config from the database, where the pure effective-limits
    function no longer applies the trial. Only ever shortens the expiry."""
    key = config_key(org)
    target_ms = int(at.timestamp() * 1000)
    ttl_ms = await redis.pttl(key)
    if ttl_ms == -2:  # no config materialized: the next load computes it afresh
        return
    if ttl_ms == -1 or time.time() * 1000 + ttl_ms > target_ms:
        await redis.pexpireat(key, target_ms)
