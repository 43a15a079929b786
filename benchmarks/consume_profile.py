"""CPU per consume request inside the app, without an HTTP server: the ASGI app is driven
in-process (scope / receive / send) against a real Redis, so the figure is the app's own cost
(Litestar routing and middleware, the fast path, auth, the meter, redis-py), repeatable on a
busy machine because it is CPU time, not wall time.

    .venv/bin/python benchmarks/consume_profile.py            # µs of CPU per request
    .venv/bin/python benchmarks/consume_profile.py --profile  # and the top functions (cProfile)
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import uvloop
from pydantic import SecretStr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.infra.embedded_redis import EmbeddedRedis  # noqa: E402
from app.main import create_app  # noqa: E402
from app.settings import Settings  # noqa: E402

TOKEN = "bench-admin-token-0123456789abcdef"


async def run(args: argparse.Namespace, tmp: Path, redis_url: str) -> None:
    settings = Settings(
        env="test",
        data_dir=tmp / "data",
        admin_token=SecretStr(TOKEN),
        log_level="WARNING",
        db={"url": f"sqlite+aiosqlite:///{tmp / 'db.sqlite'}", "auto_migrate": True},
        redis={"url": redis_url},
        meter={"flush_interval": 3600},
        worker={"embedded": False},
    )
    app = create_app(settings)
    async with app.lifespan():
        await measure(app, args)


async def measure(app: Any, args: argparse.Namespace) -> None:
    headers = {"authorization": f"Bearer {TOKEN}"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as c:
        org = (await c.post("/v1/organizations", json={"name": "bench", "plan": "team"})).json()["id"]
        await c.patch(f"/v1/organizations/{org}", json={"overrides": {"quotas": {"error": None}}})
    body = json.dumps({"organization_id": org, "items": [{"category": "error", "quantity": 1}]}).encode()
    raw_headers = [
        (b"host", b"t"),
        (b"content-type", b"application/json"),
        (b"authorization", f"Bearer {TOKEN}".encode()),
        (b"content-length", str(len(body)).encode()),
    ]

    async def one() -> int:
        scope: dict[str, Any] = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
            "scheme": "http", "path": "/v1/quotas/consume", "raw_path": b"/v1/quotas/consume",
            "query_string": b"", "root_path": "", "headers": raw_headers,
            "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "state": {},
        }  # fmt: skip
        sent = False
        status = 0

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                await asyncio.sleep(3600)
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await app(scope, receive, send)  # type: ignore[arg-type]
        return status

    async def worker(n: int) -> None:
        for _ in range(n):
            assert await one() == 200

    await asyncio.gather(*(worker(50) for _ in range(args.concurrency)))  # warm up
    prof = cProfile.Profile() if args.profile else None
    t0, c0 = time.perf_counter(), time.process_time()
    if prof:
        prof.enable()
    await asyncio.gather(*(worker(args.requests // args.concurrency) for _ in range(args.concurrency)))
    if prof:
        prof.disable()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    n = args.requests // args.concurrency * args.concurrency
    print(f"{n} consume requests, {args.concurrency} concurrent: {cpu / n * 1e6:.1f} µs CPU/request "
          f"(process CPU incl. redis-py; wall {n / wall:.0f} req/s)")  # fmt: skip
    if prof:
        pstats.Stats(prof).sort_stats(args.sort).print_stats(args.top)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=20_000)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--sort", default="tottime")
    p.add_argument("--top", type=int, default=35)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tollgate-consumeprof-"))
    redis = EmbeddedRedis(tmp / "redis", appendonly=False).start()
    try:
        uvloop.run(run(args, tmp, redis.url))
    finally:
        redis.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
