"""Differential check of ``QuotaService.consume_batch``: two checkouts must answer alike.

Runs a seeded random sequence of batches (mixed orgs, categories, quantities, projects, project
caps, suspended orgs, spike buckets, on-demand budgets, idempotency keys, ``allow_partial``, invalid
items, groups split at ``max_items``, the denial cache on and off) against a fresh private
redis-server with a fixed clock, and prints one JSON line per batch (status, body, headers) and
then the final counters (Redis usage hashes, local refusals, the Prometheus item counter). Two runs
of the same seed, one per checkout, must print the same lines:

    git archive <old-rev> app | tar -x -C /tmp/old
    .venv/bin/python benchmarks/batch_diff.py --root /tmp/old --seed 1 > /tmp/a
    .venv/bin/python benchmarks/batch_diff.py --root .        --seed 1 > /tmp/b
    cmp /tmp/a /tmp/b
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

P = argparse.ArgumentParser()
P.add_argument("--root", default=str(Path(__file__).resolve().parents[1]))
P.add_argument("--seed", type=int, default=1)
P.add_argument("--batches", type=int, default=40)
P.add_argument("--denial-cache", type=float, default=1000.0)
P.add_argument("--max-items", type=int, default=1000)
ARGS = P.parse_args()
sys.path.insert(0, str(Path(ARGS.root).resolve()))

import msgspec  # noqa: E402
import redis.asyncio as aredis  # noqa: E402

from app.clock import ManualClock  # noqa: E402
from app.errors import TollgateError  # noqa: E402
from app.infra.embedded_redis import EmbeddedRedis  # noqa: E402
from app.metering import keys, schemas, services  # noqa: E402
from app.metering.config import QuotaConfig, SpikeBucket  # noqa: E402
from app.metering.meter import Meter  # noqa: E402
from app.plans import CATEGORIES  # noqa: E402
from app.settings import MeterSettings  # noqa: E402

START = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)
CATS = ["error", "transaction", "replay", "attachment"]


def configs() -> dict[str, QuotaConfig]:
    ps = int(START.timestamp()) - 86_400
    pe = ps + 30 * 86_400
    base = dict.fromkeys(CATEGORIES, 50000)

    def cfg(org: str, **kw: Any) -> QuotaConfig:
        limits = {**base, **kw.pop("limits", {})}
        return QuotaConfig(org, 1, kw.pop("suspended", False), ps, pe, limits, **kw)

    return {
        "unlimited": cfg("unlimited", limits={"error": -1, "transaction": -1}),
        "small": cfg("small", limits={"error": 40, "replay": 10, "attachment": 300}),
        "suspended": cfg("suspended", suspended=True),
        "capped": cfg("capped", limits={"error": 200}, project_caps={"p1": {"error": 5}}),
        "spiky": cfg("spiky", limits={"error": 1000}, spike={"error": SpikeBucket(0.5, 12.0)}),
        "ondemand": cfg(
            "ondemand",
            limits={"error": 20, "replay": 5},
            on_demand_cents={"error": 1.0, "replay": 10.0},
            on_demand_budget_cents=30,
        ),
        "zero": cfg("zero", limits={"replay": 0}),
    }


class _Source:
    def __init__(self, cfgs: dict[str, QuotaConfig]) -> None:
        self.cfgs = cfgs

    async def load(self, organization_id: str) -> tuple[QuotaConfig, dict[str, int]] | None:
        cfg = self.cfgs.get(organization_id)
        return None if cfg is None else (cfg, {})


def batch(rng: random.Random, orgs: list[str], sent: list[dict[str, Any]]) -> dict[str, Any]:
    reqs: list[dict[str, Any]] = []
    for _ in range(rng.choice([1, 2, 5, 20, 60])):
        if sent and rng.random() < 0.05:  # a retry: replayed by its idempotency key
            reqs.append(rng.choice(sent))
            continue
        items = []
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            it: dict[str, Any] = {
                "category": rng.choice(CATS),
                "quantity": rng.choice([0, 1, 1, 1, 2, 5, 20]),
            }
            if rng.random() < 0.1:
                it["project"] = rng.choice(["p1", "p2"])
            items.append(it)
        r: dict[str, Any] = {"organization_id": rng.choice(orgs), "items": items}
        if rng.random() < 0.2:
            r["project"] = rng.choice(["p1", "p2"])
        if rng.random() < 0.15:
            r["idempotency_key"] = f"k{rng.randrange(10_000)}"
            sent.append(r)
        if rng.random() < 0.2:
            r["allow_partial"] = True
        if rng.random() < 0.003:
            items.append({"category": "nope"})
        if rng.random() < 0.003:
            items.append({"category": "error", "quantity": 2_000_000_000})
        if rng.random() < 0.002:
            r["organization_id"] = "unknown-org"
        reqs.append(r)
    return {"requests": reqs}


async def run(url: str) -> None:
    rng = random.Random(ARGS.seed)
    cfgs = configs()
    clock = ManualClock(START)
    settings = MeterSettings(denial_cache_seconds=ARGS.denial_cache, max_items=ARGS.max_items)
    redis = aredis.Redis.from_url(url, max_connections=256)
    meter = Meter(redis, _Source(cfgs), settings, clock)
    quotas = services.QuotaService(meter, settings)
    for cfg in cfgs.values():
        await meter.publish(cfg)
    decode = msgspec.json.Decoder(schemas.ConsumeBatchRequest).decode
    orgs = list(cfgs)
    sent: list[dict[str, Any]] = []
    for n in range(ARGS.batches):
        req = decode(json.dumps(batch(rng, orgs, sent)))
        try:
            body, headers = await quotas.consume_batch(req)
            line: dict[str, Any] = {
                "body": msgspec.json.decode(msgspec.json.encode(body)),
                "headers": headers,
            }
        except TollgateError as exc:
            line = {"error": type(exc).__name__, "detail": str(exc)}
        print(json.dumps({"batch": n, **line}, sort_keys=True))
        if rng.random() < 0.3:
            clock.advance(seconds=rng.choice([1, 5, 30]))
    usage = {org: await redis.hgetall(keys.usage_key(org)) for org in cfgs}
    print(
        json.dumps(
            {"usage": {o: {k.decode(): v.decode() for k, v in sorted(h.items())} for o, h in usage.items()}}
        )
    )
    print(json.dumps({"local_refusals": sorted(map(list, meter.local_refusals.items()))}))
    samples = {
        f"{s.labels['category']}/{s.labels['outcome']}": s.value
        for m in services.ITEMS.collect()
        for s in m.samples
        if s.name.endswith("_total") and s.value
    }
    print(json.dumps({"items_counter": samples}, sort_keys=True))
    await redis.aclose()


def main() -> None:
    import uvloop

    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedRedis(Path(tmp) / "redis", appendonly=False).start()
        try:
            uvloop.run(run(server.url))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
