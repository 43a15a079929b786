"""The Meter: one atomic Lua call per organization per request, coalesced into pipelines.

Concurrent callers in one process are gathered for one event-loop turn and sent as one pipeline
(one round trip for all of them); each org's items still go through one script call, so the
decision per org stays atomic. A configuration miss or a period rollover is answered by loading the
org's QuotaConfig (the only time anything but Redis is read) and calling again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Protocol

import msgspec
import structlog
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ClusterDownError, NoScriptError, RedisError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.clock import Clock
from app.metering import keys
from app.metering.config import QuotaConfig, read_config
from app.metering.errors import (
    IdempotencyKeyReused,
    MeterUnavailable,
    PeriodExpired,
    UnknownLease,
    UnknownOrganization,
)
from app.metering.results import Decision, Exhausted, Item, ItemDecision, Refund
from app.settings import MeterSettings

log = structlog.get_logger(__name__)
_decode = msgspec.msgpack.Decoder().decode
_json = msgspec.json.Decoder().decode
_SOURCES = {"a": "allowance", "o": "on_demand", "": None}
UNREACHABLE = (RedisConnectionError, RedisTimeoutError, ClusterDownError, OSError)
"""Errors that mean Redis is unreachable (the fail policy applies), not that a call was wrong."""


class ConfigSource(Protocol):
    """Where the meter gets an org's config on a miss (the control plane's database)."""

    async def load(self, organization_id: str) -> tuple[QuotaConfig, dict[str, int]] | None:
        """The config and the durable counters of its current period, or None if no such org."""


@dataclass(frozen=True, slots=True)
class Script:
    name: str
    source: str
    sha: str

    @property
    def sha_b(self) -> bytes:
        return self.sha.encode()

    @classmethod
    def load(cls, name: str) -> Script:
        import hashlib

        text = resources.files("app.metering").joinpath(f"lua/{name}.lua").read_text()
        return cls(name, text, hashlib.sha1(text.encode()).hexdigest())  # noqa: S324  (Redis' id)


CONSUME = Script.load("consume")
REFUND = Script.load("refund")


class _Batcher:
    """Gathers the script calls of one event-loop turn into one pipeline."""

    def __init__(self, redis: Any) -> None:
        self.redis = redis
        self.pending: list[tuple[Script, list[str], list[Any], asyncio.Future[Any]]] = []
        self.scheduled = False
        self.tasks: set[asyncio.Task[None]] = set()
        self.cluster = isinstance(redis, RedisCluster)
        # the async cluster client fails (instead of waiting) past its per-node connection cap
        self.slots = asyncio.Semaphore(32)

    def call(self, script: Script, keys_: list[str], args: list[Any]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self.pending.append((script, keys_, args, fut))
        if not self.scheduled:
            # the task's first step runs on the loop's next turn, after every caller of this
            # turn has queued its call: they all go out in one write
            self.scheduled = True
            task = loop.create_task(self._send())
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        return fut

    async def _send(self) -> None:
        batch, self.pending, self.scheduled = self.pending, [], False
        try:
            results = await self._execute(batch)
            missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
            if missing:  # a restarted or flushed Redis forgot the scripts: load once, retry those
                for script in {batch[i][0] for i in missing}:
                    await self.redis.script_load(script.source)
                again = await self._execute([batch[i] for i in missing])
                for i, r in zip(missing, again, strict=True):
                    results[i] = r
        except Exception as exc:
            if not isinstance(exc, RedisError | OSError):
                log.error("meter.batch_failed", error=type(exc).__name__, size=len(batch))
                exc = RedisConnectionError(f"redis client failed: {type(exc).__name__}")
            for *_, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        for (*_, fut), result in zip(batch, results, strict=True):
            if fut.done():
                continue
            if isinstance(result, Exception):
                fut.set_exception(result)
            else:
                fut.set_result(result)

    async def _one(self, script: Script, k: list[str], a: list[Any]) -> Any:
        """One script call through the cluster client (it routes by the keys' slot)."""
        async with self.slots:  # see __init__
            for attempt in range(3):
                try:
                    return await self.redis.evalsha(script.sha, len(k), *k, *a)
                except (NoScriptError, ResponseError) as exc:
                    return exc
                except AttributeError:
                    # redis-py's async cluster client can trip over a connection another task
                    # is setting up ('NoneType' has no 'writelines'); nothing was sent: retry
                    await asyncio.sleep(0.001 * (attempt + 1))
            return RedisConnectionError("cluster connection kept failing")

    async def _execute(self, batch: Sequence[tuple[Script, list[str], list[Any], Any]]) -> list[Any]:
        if self.cluster:
            # redis-py refuses scripts in cluster pipelines: send them concurrently instead (each
            # org's keys live on one node; the client keeps one connection pool per node)
            return list(await asyncio.gather(*(self._one(s, k, a) for s, k, a, _ in batch)))
        return await self._pipeline(batch)

    async def _pipeline(self, batch: Sequence[tuple[Script, list[str], list[Any], Any]]) -> list[Any]:
        """One write of every EVALSHA, then their replies in order (error replies as values).

        redis-py's pool, connection and (hiredis) reply parser are used as they are; only the
        packing is ours: redis-py's general ``pack_command`` cost more CPU than the rest of a
        consume's meter work (benchmarks/consume_profile.py), and an EVALSHA of strings and numbers
        is simple to pack. The socket is dropped on any failure so it never desyncs.
        """
        pool = self.redis.connection_pool
        conn = await pool.get_connection()
        try:
            await conn.send_packed_command(b"".join([_pack_evalsha(*c[:3]) for c in batch]), False)
            out: list[Any] = []
            for _ in batch:
                try:
                    out.append(await conn.read_response())
                except ResponseError as exc:  # this script's error reply; the socket is in sync
                    out.append(exc)
            return out
        except BaseException:
            await conn.disconnect(nowait=True)
            raise
        finally:
            await pool.release(conn)


def _replayed(stored: bytes) -> list[Any]:
    """A stored answer for an idempotency key. Answers stored before 2026-11-25 are JSON objects
    (``{"s": "ok", ...}``); they are read as the arrays the scripts answer now, so a retry that
    spans an upgrade is still answered from its first decision, never counted again."""
    if stored[:1] != b"{":
        answer: list[Any] = _decode(stored)
        return answer
    old = _json(stored)
    if "v" in old:  # consume.lua
        return [old["s"], old["v"], old["ps"], old["pe"], old["r"], old.get("x") or []]
    return [old["s"], old["ps"], old["r"]]  # refund.lua


def _pack_evalsha(script: Script, k: list[str], args: list[Any]) -> bytes:
    """``EVALSHA sha numkeys keys... args...`` in RESP (an array of bulk strings); strings are
    sent UTF-8, numbers as redis-py sends them (``repr``)."""
    parts = []
    for v in (*k, *args):
        t = type(v)
        if t is str:
            b = v.encode()
        elif t is int or t is float:
            b = repr(v).encode()
        elif t is bytes:
            b = v
        else:
            raise TypeError(f"cannot send {t.__name__} to Redis")
        parts.append(b"$%d\r\n%b\r\n" % (len(b), b))
    n = str(len(k)).encode()
    head = b"*%d\r\n$7\r\nEVALSHA\r\n$40\r\n%b\r\n$%d\r\n%b\r\n" % (len(parts) + 3, script.sha_b, len(n), n)
    return head + b"".join(parts)


class Meter:
    """Consume, refund and lease against an org's monthly quotas."""

    def __init__(
        self, redis: Any, source: ConfigSource, settings: MeterSettings, clock: Clock | None = None
    ) -> None:
        self.redis = redis
        self.source = source
        self.settings = settings
        self.clock = clock or Clock()
        self._batcher = _Batcher(redis)
        self.touched: set[str] = set()
        """Orgs whose counters changed since the last flush (read by the usage flusher)."""
        self._denials: dict[tuple[str, str], tuple[float, Exhausted, int, int]] = {}
        self.local_refusals: dict[tuple[str, int, str, str], int] = {}
        """Units refused from the denial cache, added to Redis' refused counters by
        :meth:`flush_refusals` (so usage reads see them within the flush interval)."""
        self.redis_calls = 0
        self._loading: dict[str, asyncio.Future[None]] = {}
        # redis-py's async cluster client fails concurrent MULTI pipelines; there the seed of
        # restored counters is a plain pipeline (HSETNX never overwrites, so order is all it needs)
        self._atomic_pipelines = not isinstance(redis, RedisCluster)

    # ----------------------------------------------------------------- configuration
    async def publish(self, config: QuotaConfig, seed: dict[str, int] | None = None) -> None:
        """Materialize ``config`` (atomically replacing the old one); ``seed`` restores durable
        counters that Redis lost, never overwriting live ones."""
        org = config.organization_id
        ttl = max(1, int(config.period_end + self.settings.counter_grace - self.clock.time()))
        if seed:
            pipe = self.redis.pipeline(transaction=self._atomic_pipelines)
            for name, value in seed.items():
                pipe.hsetnx(keys.usage_key(org), name, value)
            await pipe.execute()
        await self.redis.set(keys.config_key(org), config.to_redis(), ex=ttl)  # replaced atomically
        self.forget(org)

    async def invalidate(self, organization_id: str) -> None:
        """Drop the materialized config: the next call loads it afresh."""
        await self.redis.delete(keys.config_key(organization_id))
        self.forget(organization_id)

    def forget(self, organization_id: str) -> None:
        for key in [k for k in self._denials if k[0] == organization_id]:
            self._denials.pop(key, None)

    async def _load(self, organization_id: str) -> None:
        """Load and publish an org's config; concurrent misses for one org share one load (a
        cold start under load makes one database read per org, not one per request)."""
        running = self._loading.get(organization_id)
        if running is None:
            running = asyncio.ensure_future(self._load_once(organization_id))
            self._loading[organization_id] = running
            running.add_done_callback(lambda _: self._loading.pop(organization_id, None))
        await asyncio.shield(running)

    async def _load_once(self, organization_id: str) -> None:
        loaded = await self.source.load(organization_id)
        if loaded is None:
            raise UnknownOrganization
        await self.publish(*loaded)

    # ----------------------------------------------------------------- consume
    async def consume(
        self,
        organization_id: str,
        items: Sequence[Item],
        *,
        idempotency_key: str | None = None,
        allow_partial: bool = False,
        lease_id: str | None = None,
    ) -> Decision:
        """Check and count ``items`` for one org in one atomic script call."""
        cached = self._from_denial_cache(organization_id, items)
        if cached is not None:
            return cached
        args = self._consume_args(items, idempotency_key, allow_partial, lease_id)
        k = [
            keys.config_key(organization_id),
            keys.usage_key(organization_id),
            keys.idempotency_key(organization_id, idempotency_key or ""),
        ]
        try:
            raw = await self._call(CONSUME, organization_id, k, args)
        except UNREACHABLE as exc:
            return self._degraded(organization_id, items, exc)
        decision = self._decision(organization_id, items, raw)
        self.touched.add(organization_id)
        self._remember_denials(decision)
        return decision

    async def consume_batch(
        self, requests: Sequence[tuple[str, Sequence[Item], str | None, bool]]
    ) -> list[Decision]:
        """Many orgs in one request: their script calls share one pipeline (one round trip).

        The requests of one org (without an idempotency key, with the same ``allow_partial``) go
        into one script call with all their items in request order, up to ``max_items`` items per
        call: the script decides item by item in order, exactly as for consecutive calls, so the
        answers are the same while Redis runs one script per org instead of one per request.
        """
        out: list[Decision | None] = [None] * len(requests)
        calls: list[tuple[str, bool, list[int]]] = []
        open_calls: dict[tuple[str, bool], tuple[list[int], list[int]]] = {}
        limit = max(1, self.settings.max_items)
        for i, (org, items, idem, partial) in enumerate(requests):
            if idem:
                calls.append((org, partial, [i]))
                continue
            current = open_calls.get((org, partial))
            if current is None or current[1][0] + len(items) > limit:
                current = ([], [0])
                open_calls[(org, partial)] = current
                calls.append((org, partial, current[0]))
            current[0].append(i)
            current[1][0] += len(items)

        async def run(org: str, partial: bool, idxs: list[int]) -> None:
            if len(idxs) == 1:
                _, items, idem, _ = requests[idxs[0]]
                out[idxs[0]] = await self.consume(org, items, idempotency_key=idem, allow_partial=partial)
                return
            combined = [it for i in idxs for it in requests[i][1]]
            # every item of the group in a category known to be exhausted: each request would be
            # refused from the denial cache, so ask it once for all of them and split the answer
            # (``exhausted``, which only feeds the batch's headers, is the group's, as below)
            whole = self._from_denial_cache(org, combined) if all(requests[i][1] for i in idxs) else None
            todo = idxs
            if whole is None:
                todo = []
                for i in idxs:
                    cached = self._from_denial_cache(org, requests[i][1])
                    if cached is None:
                        todo.append(i)
                    else:
                        out[i] = cached
                if not todo:
                    return
                if len(todo) < len(idxs):
                    combined = [it for i in todo for it in requests[i][1]]
                whole = await self.consume(org, combined, allow_partial=partial)
            start = 0
            for i in todo:
                stop = start + len(requests[i][1])
                out[i] = whole.part(start, stop)
                start = stop

        await asyncio.gather(*(run(org, partial, idxs) for org, partial, idxs in calls))
        return [d for d in out if d is not None]

    async def _call(
        self, script: Script, organization_id: str, k: list[str], args: list[Any]
    ) -> tuple[list[Any], bool]:
        """The script's answer (a MessagePack array, status first) and whether it was replayed
        for a known idempotency key."""
        for _attempt in range(3):
            self.redis_calls += 1
            raw = await self._batcher.call(script, k, [self.clock.time(), *args])
            if raw[:1] == b"R":
                return _replayed(raw[1:]), True
            result: list[Any] = _decode(raw)
            if result[0] not in ("miss", "stale"):
                return result, False
            await self._load(organization_id)
        raise MeterUnavailable("The organization's quota configuration could not be loaded.")

    def _consume_args(
        self, items: Sequence[Item], idem: str | None, partial: bool, lease: str | None
    ) -> list[Any]:
        args: list[Any] = [
            self.settings.counter_grace,
            "1" if idem else "",
            self.settings.idempotency_ttl,
            "1" if partial else "",
            lease or "",
        ]
        for it in items:
            args += [it.category, it.quantity, it.project]
        return args

    def _decision(self, org: str, items: Sequence[Item], answer: tuple[list[Any], bool]) -> Decision:
        (_, _version, period_start, period_end, results, exhausted), replayed = answer
        if len(results) != len(items):
            raise IdempotencyKeyReused
        decisions = []
        for it, r in zip(items, results, strict=True):
            accepted, granted, src, remaining, limit, reason, retry = r
            decisions.append(
                ItemDecision(
                    category=it.category,
                    quantity=it.quantity,
                    accepted=bool(accepted),
                    granted=int(granted),
                    source=_SOURCES.get(src),
                    remaining=None if remaining < 0 else int(remaining),
                    limit=None if limit < 0 else int(limit),
                    reason=reason or None,
                    retry_after=float(retry),
                )
            )
        return Decision(
            organization_id=org,
            items=decisions,
            period_start=int(period_start),
            period_end=int(period_end),
            exhausted=[Exhausted(c, reason, float(retry)) for c, reason, retry in exhausted or ()],
            replayed=replayed,
        )

    def _degraded(self, org: str, items: Sequence[Item], exc: BaseException) -> Decision:
        """Redis is unreachable: answer by the configured policy, and say so."""
        log.warning(
            "meter.degraded",
            organization_id=org,
            error=type(exc).__name__,
            policy=self.settings.fail_policy,
        )
        accept = self.settings.fail_policy == "open"
        return Decision(
            organization_id=org,
            degraded=True,
            items=[
                ItemDecision(
                    it.category,
                    it.quantity,
                    accept,
                    it.quantity if accept else 0,
                    None,
                    None,
                    None,
                    None if accept else "unavailable",
                    0.0 if accept else 1.0,
                )
                for it in items
            ],
        )

    # ----------------------------------------------------------------- denial cache
    def _from_denial_cache(self, org: str, items: Sequence[Item]) -> Decision | None:
        """A request whose every item is in a category known to be exhausted is refused without
        Redis (for at most ``denial_cache_seconds``, so upgrades still apply within a second)."""
        if not self._denials or not items:
            return None
        now = time.monotonic()
        hits = []
        for it in items:
            hit = self._denials.get((org, it.category))
            if hit is None or hit[0] <= now or it.project or it.quantity == 0:
                return None
            hits.append(hit)
        ps, pe = hits[0][2], hits[0][3]
        if self.clock.time() >= pe:  # a new period: nothing is known to be exhausted
            return None
        for it, (_, ex, _, _) in zip(items, hits, strict=True):
            key = (org, ps, it.category, ex.reason)
            self.local_refusals[key] = self.local_refusals.get(key, 0) + it.quantity
        return Decision(
            organization_id=org,
            items=[
                ItemDecision(it.category, it.quantity, False, 0, None, 0, None, h[1].reason, h[1].retry_after)
                for it, h in zip(items, hits, strict=True)
            ],
            period_start=ps,
            period_end=pe,
            exhausted=[h[1] for h in hits],
        )

    def _remember_denials(self, decision: Decision) -> None:
        ttl = self.settings.denial_cache_seconds
        if ttl <= 0 or not decision.exhausted:
            return
        until = time.monotonic() + ttl
        for ex in decision.exhausted:
            if ex.reason in ("usage_exceeded", "on_demand_exhausted", "suspended"):
                self._denials[(decision.organization_id, ex.category)] = (
                    until,
                    ex,
                    decision.period_start,
                    decision.period_end,
                )
        if len(self._denials) > 100_000:
            self._denials.clear()

    async def flush_refusals(self) -> None:
        """Add the refusals answered from the denial cache to Redis' counters."""
        pending, self.local_refusals = self.local_refusals, {}
        if not pending:
            return
        pipe = self.redis.pipeline(transaction=False)
        for (org, ps, cat, reason), n in pending.items():
            pipe.hincrby(keys.usage_key(org), f"{ps}:x:{cat}:{reason}", n)
        try:
            await pipe.execute()
        except UNREACHABLE:
            for key, n in pending.items():
                self.local_refusals[key] = self.local_refusals.get(key, 0) + n

    # ----------------------------------------------------------------- refund & leases
    async def refund(
        self,
        organization_id: str,
        items: Sequence[Item],
        *,
        period_start: int | None = None,
        idempotency_key: str | None = None,
    ) -> Refund:
        args: list[Any] = [
            self.settings.counter_grace,
            "1" if idempotency_key else "",
            self.settings.idempotency_ttl,
            "" if period_start is None else str(period_start),
            "",
        ]
        for it in items:
            args += [it.category, it.quantity, it.project]
        return await self._refund(organization_id, args, idempotency_key)

    async def return_lease(self, organization_id: str, lease_id: str, unused: int) -> Refund:
        """Give back a lease's unused units, into the period the lease was granted in. Returning
        twice returns nothing twice (the lease record is gone after the first)."""
        args = [self.settings.counter_grace, "1", self.settings.idempotency_ttl, "", lease_id, "", unused, ""]
        return await self._refund(organization_id, args, f"lease:{lease_id}")

    async def _refund(self, org: str, args: list[Any], idem: str | None) -> Refund:
        k = [keys.config_key(org), keys.usage_key(org), keys.idempotency_key(org, idem or "")]
        try:
            result, _ = await self._call(REFUND, org, k, args)
        except UNREACHABLE as exc:
            raise MeterUnavailable from exc
        if result[0] == "unknown_period":
            raise PeriodExpired
        if result[0] == "unknown_lease":
            raise UnknownLease
        self.touched.add(org)
        self.forget(org)
        return Refund(org, int(result[1]), {c: int(n) for c, n in result[2]})

    # ----------------------------------------------------------------- reads
    async def config(self, organization_id: str) -> dict[str, Any]:
        """The org's materialized config (``QuotaConfig.to_redis``), loaded on a miss or when its
        period is over."""
        cfg = read_config(await self.redis.get(keys.config_key(organization_id)))
        if cfg is None or cfg["pe"] <= self.clock.time():
            await self._load(organization_id)
            cfg = read_config(await self.redis.get(keys.config_key(organization_id)))
        if cfg is None:
            raise MeterUnavailable("The organization's quota configuration could not be loaded.")
        return cfg

    async def counters(self, organization_id: str) -> tuple[dict[str, Any], dict[str, str]]:
        """The materialized config and raw counters of an org (loads the config on a miss)."""
        cfg = await self.config(organization_id)
        return cfg, await self._hgetall(keys.usage_key(organization_id))

    async def _hgetall(self, key: str) -> dict[str, str]:
        raw = await self.redis.hgetall(key)
        return {k.decode(): v.decode() for k, v in raw.items()}

    async def reset_spike(self, organization_id: str, categories: Iterable[str]) -> None:
        """Refill the spike buckets (an admin's reset after a legitimate spike)."""
        fields = [f for c in categories for f in (f"b:{c}", f"bt:{c}")]
        if fields:
            await self.redis.hdel(keys.usage_key(organization_id), *fields)
        self.forget(organization_id)
