"""Python CPU per event of ``POST /v1/quotas/consume/batch``, in process and repeatable.

Runs the endpoint's fast path (``controllers._fast_consume``, or ``fastpath._serve`` where that module
exists: strict msgspec decode, the service's
``consume_batch``, msgspec encode, header list, the two ASGI sends) against a private redis-server
(AOF off), with a stub authenticator, so nothing but the batch path is timed. Each batch is 1,000
single-event requests (``{"category": "error", "quantity": 1}``), as ``benchmarks/meter.py batch``
sends them. CPU is this process's ``time.process_time`` (Redis runs in its own process).

    .venv/bin/python benchmarks/batch_profile.py                 # both scenarios, 200 batches each
    .venv/bin/python benchmarks/batch_profile.py --batches 50 --profile 10orgs   # + cProfile top 30
    .venv/bin/python benchmarks/batch_profile.py --root /tmp/old   # another checkout's app/

Scenarios: ``10orgs`` (1,000 requests over 10 orgs with unlimited errors, spike protection off: the
benchmark's case), ``1000orgs`` (1,000 distinct orgs: 1,000 script calls per batch), ``denied``
(10 orgs whose 500-error allowance runs out in the first batch: denials, headers, the denial cache).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import redis.asyncio as aredis

ROOT = Path(__file__).resolve().parents[1]
if "--root" in sys.argv:  # another checkout's app (e.g. ``git archive <rev> app | tar -x -C /tmp/old``)
    ROOT = Path(sys.argv[sys.argv.index("--root") + 1]).resolve()
sys.path.insert(0, str(ROOT))

from app.clock import Clock  # noqa: E402
from app.infra.embedded_redis import EmbeddedRedis  # noqa: E402
from app.metering import controllers  # noqa: E402
from app.metering.config import QuotaConfig  # noqa: E402
from app.metering.meter import Meter  # noqa: E402
from app.metering.services import QuotaService  # noqa: E402
from app.plans import CATEGORIES  # noqa: E402
from app.settings import MeterSettings  # noqa: E402

PATH = "/v1/quotas/consume/batch"


class _Source:
    def __init__(self, error_limit: int) -> None:
        self.error_limit = error_limit

    async def load(self, organization_id: str) -> tuple[QuotaConfig, dict[str, int]] | None:
        now = int(time.time())
        return QuotaConfig(
            organization_id=organization_id, version=1, suspended=False, period_start=now - 86_400,
            period_end=now + 20 * 86_400,
            limits={c: (self.error_limit if c == "error" else 50_000) for c in CATEGORIES},
        ), {}  # fmt: skip


class _State(dict[str, Any]):
    """Litestar's ``State``: attributes and ``.get``/``[]`` alike."""

    def __getattr__(self, name: str) -> Any:
        return self[name]


class _Auth:
    async def authenticate(self, authorization: str | None) -> Any:
        return SimpleNamespace(require=lambda *scopes: None)


def _body(orgs: list[str]) -> bytes:
    reqs = [
        {"organization_id": orgs[i % len(orgs)], "items": [{"category": "error", "quantity": 1}]}
        for i in range(1000)
    ]
    return json.dumps({"requests": reqs}).encode()


async def scenario(url: str, name: str, batches: int, profile: bool) -> float:
    tag = f"{name}-{time.time_ns()}"
    n_orgs, limit = {"10orgs": (10, -1), "1000orgs": (1000, -1), "denied": (10, 500)}[name]
    orgs = [f"{tag}-{i}" for i in range(n_orgs)]
    redis = aredis.Redis.from_url(url, max_connections=64)
    source = _Source(limit)
    meter = Meter(redis, source, MeterSettings(), Clock())
    for org in orgs:  # as the control plane does when it creates them (no miss under load)
        loaded = await source.load(org)
        assert loaded is not None
        await meter.publish(*loaded)
    quotas = QuotaService(meter, MeterSettings())
    settings = SimpleNamespace(meter=MeterSettings())
    state = _State(ctx=SimpleNamespace(auth=_Auth(), settings=settings), quotas=quotas)
    body = _body(orgs)
    scope: Any = {
        "type": "http",
        "method": "POST",
        "path": PATH,
        "app": SimpleNamespace(state=state),
        "headers": [(b"authorization", b"Bearer x"), (b"content-length", str(len(body)).encode())],
    }
    statuses: list[int] = []
    bodies: list[bytes] = []

    async def receive() -> Any:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Any) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])
        else:
            bodies[:] = [message["body"]]

    async def fallback(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("the fast path refused the body")

    if hasattr(controllers, "_FAST"):  # the fast path inside the route's middleware
        decode, call = controllers._FAST[PATH]

        async def one() -> None:
            await controllers._fast_consume(decode, call, fallback, scope, receive, send)

    else:  # app/metering/fastpath.py, in front of the router
        from app.metering import fastpath  # type: ignore[attr-defined,unused-ignore]

        stub: Any = SimpleNamespace(state=state)

        async def one() -> None:
            await fastpath._serve(stub, fallback, fastpath.ROUTES[PATH], scope, receive, send)

    for _ in range(3):  # warm-up: config loads, script load, denial cache
        await one()
    prof = cProfile.Profile() if profile else None
    t0 = time.process_time()
    if prof:
        prof.enable()
    for _ in range(batches):
        await one()
    if prof:
        prof.disable()
    cpu = time.process_time() - t0
    await redis.aclose()
    assert set(statuses) == {200}, statuses
    assert b'"degraded"' not in bodies[0], bodies[0][:300]
    if prof:
        pstats.Stats(prof).sort_stats("tottime").print_stats(30)
    return cpu / (batches * 1000) * 1e6


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("scenarios", nargs="*", default=["10orgs", "1000orgs", "denied"])
    p.add_argument("--batches", type=int, default=200)
    p.add_argument("--profile", action="store_true", help="cProfile the timed batches (slower)")
    p.add_argument("--repeat", type=int, default=3, help="runs per scenario; all are printed")
    p.add_argument("--root", default=str(ROOT), help="the checkout whose app/ is measured")
    p.add_argument(
        "--gc-freeze",
        action="store_true",
        help="gc.freeze() once set up, as an app could after startup (full GC passes then skip it)",
    )
    args = p.parse_args()
    import uvloop

    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedRedis(Path(tmp) / "redis", appendonly=False).start()
        if args.gc_freeze:
            import gc

            gc.collect()
            gc.freeze()
        try:
            for name in args.scenarios:
                runs = [
                    uvloop.run(scenario(server.url, name, args.batches, args.profile))
                    for _ in range(args.repeat)
                ]
                print(
                    f"{name}: CPU µs/event "
                    + " / ".join(f"{r:.1f}" for r in runs)
                    + f" (min {min(runs):.1f})",
                    flush=True,
                )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
