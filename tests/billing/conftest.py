"""Billing fixtures: the fake Stripe server (localstripe + stand-ins), the app served by uvicorn on
a real port with Stripe's webhooks registered to it, and helpers that sign payloads exactly as
Stripe does (HMAC-SHA256 of ``f"{t}.{raw_body}"`` with the endpoint secret)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import hmac
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe
import uvicorn
from litestar import Litestar
from pydantic import SecretStr

from app.billing.services import CatalogSync
from app.billing.stripe_client import StripeGateway
from app.clock import Clock
from app.context import AppContext
from app.infra.embedded_redis import EmbeddedRedis
from app.main import create_app
from app.settings import StripeSettings
from tests.conftest import ADMIN_TOKEN, make_settings
from tests.harness.fake_stripe import FakeStripe

SECRET = "whsec_current_0123456789abcdef"
OLD_SECRET = "whsec_previous_0123456789abcdef"
API_KEY = "sk_test_tollgate"


def sign(body: bytes, secret: str = SECRET, timestamp: int | None = None) -> str:
    """``Stripe-Signature`` exactly as Stripe computes it."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def event(event_type: str, obj: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
    return {
        "id": event_id or f"evt_test_{uuid.uuid4().hex[:16]}",
        "object": "event",
        "api_version": "2017-08-15",
        "created": int(time.time()),
        "type": event_type,
        "data": {"object": obj},
    }


async def post_event(
    client: httpx.AsyncClient | Any,
    payload: dict[str, Any],
    secret: str = SECRET,
    timestamp: int | None = None,
) -> Any:
    body = json.dumps(payload).encode()
    return await client.post(
        "/webhooks/stripe",
        content=body,
        headers={"Stripe-Signature": sign(body, secret, timestamp), "Content-Type": "application/json"},
    )


class OffsetClock(Clock):
    """Real time plus an offset (a scheduled job run "later")."""

    def __init__(self, offset: timedelta) -> None:
        self.offset = offset

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def time(self) -> float:
        return time.time() + self.offset.total_seconds()


def later(ctx: AppContext, days: float, **stripe_settings: Any) -> dict[str, Any]:
    """A job context for the app, as if ``days`` had passed (and with other billing settings)."""
    settings = ctx.settings
    if stripe_settings:
        settings = settings.model_copy(update={"stripe": settings.stripe.model_copy(update=stripe_settings)})
    return {"app": dataclasses.replace(ctx, clock=OffsetClock(timedelta(days=days)), settings=settings)}


async def wait_for(probe: Callable[[], Awaitable[Any]], timeout: float = 15.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s (last: {last!r})")


@dataclasses.dataclass
class Billing:
    """A running app wired to the fake Stripe."""

    app: Litestar
    client: Any
    fake: FakeStripe
    stripe: stripe.StripeClient

    @property
    def ctx(self) -> AppContext:
        ctx: AppContext = self.app.state.ctx
        return ctx

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """A blocking stripe/fake call, off the event loop (the app keeps serving meanwhile)."""
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def org(self, plan: str = "free", **extra: Any) -> dict[str, Any]:
        resp = await self.client.post(
            "/v1/organizations", json={"name": f"Org {uuid.uuid4().hex[:8]}", "plan": plan, **extra}
        )
        assert resp.status_code == 201, resp.text
        return resp.json()  # type: ignore[no-any-return]

    async def get_org(self, org_id: str) -> dict[str, Any]:
        resp = await self.client.get(f"/v1/organizations/{org_id}")
        assert resp.status_code == 200, resp.text
        return resp.json()  # type: ignore[no-any-return]

    async def wait_org(self, org_id: str, timeout: float = 15.0, **expected: Any) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            org = await self.get_org(org_id)
            return org if all(org[k] == v for k, v in expected.items()) else None

        return await wait_for(probe, timeout)  # type: ignore[no-any-return]

    async def checkout(self, org_id: str, plan: str = "team", **body: Any) -> Any:
        return await self.client.post(f"/v1/organizations/{org_id}/checkout", json={"plan": plan, **body})

    async def subscribe(self, org_id: str, plan: str = "team", **body: Any) -> dict[str, Any]:
        """Checkout and pay; returns the checkout answer and Stripe's completed session."""
        resp = await self.checkout(org_id, plan, **body)
        assert resp.status_code == 200, resp.text
        assert resp.json()["mode"] == "checkout"
        completed = await self.call(self.fake.complete_checkout, resp.json()["session_id"])
        return {"checkout": resp.json(), "session": completed}

    async def consume(self, org_id: str, quantity: int, category: str = "error") -> dict[str, Any]:
        resp = await self.client.post(
            "/v1/quotas/consume",
            json={"organization_id": org_id, "items": [{"category": category, "quantity": quantity}]},
        )
        assert resp.status_code == 200, resp.text
        return resp.json()  # type: ignore[no-any-return]

    async def audit(self, org_id: str) -> list[dict[str, Any]]:
        resp = await self.client.get(f"/v1/organizations/{org_id}/audit", params={"limit": 200})
        assert resp.status_code == 200, resp.text
        return list(reversed(resp.json()["items"]))  # oldest first


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def fake() -> Iterator[FakeStripe]:
    with FakeStripe() as server:
        yield server


def billing_settings(workdir: Path, db_url: str, redis_url: str, fake: FakeStripe, **stripe_kw: Any) -> Any:
    settings = make_settings(workdir, db_url, redis_url)
    settings.stripe = StripeSettings(
        api_key=SecretStr(API_KEY),
        webhook_secrets=[SecretStr(SECRET), SecretStr(OLD_SECRET)],
        api_base=fake.url,
        max_network_retries=1,
        timeout=10.0,
        event_retry_delay=0.2,
        **stripe_kw,
    )
    return settings


@pytest.fixture(scope="session")
async def synced(fake: FakeStripe) -> None:
    """The default catalog's products and prices exist in the fake Stripe."""
    gw = StripeGateway(StripeSettings(api_key=SecretStr(API_KEY), api_base=fake.url))
    from app.plans import default_catalog

    await CatalogSync(default_catalog(), gw, gw.settings).run()


@contextlib.asynccontextmanager
async def serve(app: Litestar) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 (lifespan on) in this event loop."""
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on", log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    await wait_for(lambda: _started(server, task), timeout=30, interval=0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=30)


async def _started(server: uvicorn.Server, task: asyncio.Task[None]) -> bool:
    if task.done():
        task.result()  # surface a failed start-up
    return bool(server.started)


@pytest.fixture(scope="session")
async def served(
    workdir: Path, redis_server: EmbeddedRedis, sqlite_url: str, fake: FakeStripe, synced: None
) -> AsyncIterator[Billing]:
    """The app on a real port (SQLite), receiving the fake Stripe's signed webhooks."""
    app = create_app(billing_settings(workdir, sqlite_url, redis_server.url, fake))
    async with serve(app) as url:
        await asyncio.to_thread(fake.register_webhook, f"{url}/webhooks/stripe", SECRET)
        async with httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30, trust_env=False
        ) as client:
            yield Billing(app, client, fake, fake.client(API_KEY))


@pytest.fixture(scope="session")
async def pg(
    workdir: Path, redis_server: EmbeddedRedis, postgres_url: str, fake: FakeStripe, synced: None
) -> AsyncIterator[Billing]:
    """The app on PostgreSQL, in process; no webhooks are registered to it, tests post them."""
    from litestar.testing import AsyncTestClient

    app = create_app(billing_settings(workdir, postgres_url, redis_server.url, fake))
    async with AsyncTestClient(app, base_url="http://127.0.0.1") as client:
        client.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
        yield Billing(app, client, fake, fake.client(API_KEY))
