"""Overload: beyond ``meter.max_in_flight`` the quota endpoints shed load with a clear 503, and a
Redis that stops answering in time gives the documented degraded answer, never a 500."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from app.infra.embedded_redis import EmbeddedRedis
from app.main import create_app
from tests.conftest import ADMIN_TOKEN, AppClient, live_server, make_settings, new_org


def consume_body(org_id: str) -> bytes:
    return json.dumps({"organization_id": org_id, "items": [{"category": "error", "quantity": 1}]}).encode()


async def open_request(base: str, body: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Send a consume's headers but hold back its body: the request is in flight until we finish."""
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        (
            f"POST /v1/quotas/consume HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    return reader, writer


async def read_status(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    return int(head[9:12])


async def test_requests_beyond_max_in_flight_get_503_with_retry_after(make_client: Any) -> None:
    async with make_client(max_in_flight=3) as client:
        org = await new_org(client)
        body = consume_body(org["id"])
        held = [await open_request(str(client.base_url).rstrip("/"), body) for _ in range(3)]
        await asyncio.sleep(0.2)  # the server has started all three and waits for their bodies

        refused = await client.post("/v1/quotas/consume", content=body)
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["error"] == "overloaded"
        assert "3 quota requests" in refused.json()["detail"]
        # other endpoints are not shed
        assert (await client.get(f"/v1/organizations/{org['id']}")).status_code == 200

        for reader, writer in held:  # the admitted requests complete normally
            writer.write(body)
            assert await read_status(reader) == 200
            writer.close()
        ok = await client.post("/v1/quotas/consume", content=body)
        assert ok.status_code == 200 and ok.json()["accepted"] is True
        usage = (await client.get(f"/v1/organizations/{org['id']}/usage")).json()
        used = next(c for c in usage["categories"] if c["category"] == "error")["used"]
        assert used == 4  # the refused request counted nothing


async def test_a_flood_gets_only_200s_and_503s(make_client: Any) -> None:
    async with make_client(max_in_flight=4) as client:
        org = await new_org(client)
        body = consume_body(org["id"])
        responses = await asyncio.gather(
            *(client.post("/v1/quotas/consume", content=body) for _ in range(200))
        )
        statuses = [r.status_code for r in responses]
        assert set(statuses) <= {200, 503}, statuses
        assert statuses.count(503) > 0 and statuses.count(200) > 0
        for r in responses:
            if r.status_code == 503:
                assert r.headers["retry-after"] == "1" and r.json()["error"] == "overloaded"
        usage = (await client.get(f"/v1/organizations/{org['id']}/usage")).json()
        used = next(c for c in usage["categories"] if c["category"] == "error")["used"]
        assert used == statuses.count(200)


class StallingProxy:
    """A TCP proxy to Redis that can stop passing Redis' answers on (a Redis too slow to answer
    within the client's socket timeout)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"redis://127.0.0.1:{port}/0"

    async def __aexit__(self, *_: object) -> None:
        assert self.server is not None
        self.server.close()
        self.flowing.set()

    async def _serve(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        rreader, rwriter = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, gated: bool) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    if gated:
                        await self.flowing.wait()
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pump(creader, rwriter, False), pump(rreader, cwriter, True))


@contextlib.asynccontextmanager
async def app_on(redis_url: str, workdir: Path, sqlite_url: str, real: str) -> AsyncIterator[AppClient]:
    settings = make_settings(
        workdir, sqlite_url, redis_url, worker_redis_url=real, socket_timeout=0.25, max_in_flight=64
    )
    app = create_app(settings)
    async with live_server(app) as base, AppClient(app, base_url=base) as client:
        client.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
        yield client


async def test_a_redis_timeout_under_load_is_a_degraded_answer_not_a_500(
    workdir: Path, sqlite_url: str, redis_server: EmbeddedRedis
) -> None:
    proxy = StallingProxy(redis_server.port)
    async with proxy as url, app_on(url, workdir, sqlite_url, redis_server.url) as client:
        org = await new_org(client)
        body = consume_body(org["id"])
        assert (await client.post("/v1/quotas/consume", content=body)).json()["accepted"] is True

        proxy.flowing.clear()  # Redis stops answering within redis.socket_timeout (0.25 s)
        responses = await asyncio.gather(
            *(client.post("/v1/quotas/consume", content=body) for _ in range(100))
        )
        statuses = {r.status_code for r in responses}
        assert statuses <= {200, 503}, [r.text for r in responses if r.status_code not in (200, 503)]
        degraded = [r for r in responses if r.status_code == 200]
        assert degraded, statuses
        for r in degraded:  # fail closed (the default), and it says so
            assert r.json()["degraded"] is True and r.json()["accepted"] is False
            assert r.json()["items"][0]["reason"] == "unavailable"
            assert r.headers["x-tollgate-degraded"] == "redis-unavailable"
            assert r.headers["retry-after"] == "1"

        proxy.flowing.set()
        for _ in range(100):  # the service recovers by itself
            healed = (await client.post("/v1/quotas/consume", content=body)).json()
            if not healed.get("degraded"):
                break
            await asyncio.sleep(0.05)
        assert healed["accepted"] is True and not healed.get("degraded")


async def test_overload_answer_is_json_over_http(make_client: Any) -> None:
    """A client that only speaks HTTP sees a parseable error body and can back off."""
    async with make_client(max_in_flight=1) as client:
        org = await new_org(client)
        base = str(client.base_url).rstrip("/")
        body = consume_body(org["id"])
        reader, writer = await open_request(base, body)
        await asyncio.sleep(0.1)
        async with httpx.AsyncClient(base_url=base, headers=client.headers) as other:
            resp = await other.post("/v1/quotas/consume/batch", json={"requests": [json.loads(body)]})
        assert resp.status_code == 503 and resp.headers["content-type"] == "application/json"
        writer.write(body)
        assert await read_status(reader) == 200
        writer.close()
