"""Outbound usage notifications, end to end: the app serves on 127.0.0.1, a real HTTP receiver on
127.0.0.1 verifies every delivery with the ``standardwebhooks`` verifier, usage is consumed through
the quota API and counted by the real Redis meter."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from app.infra.embedded_redis import EmbeddedRedis
from app.main import create_app
from app.notifications.services import usage_flushed
from app.settings import NotificationSettings
from tests.conftest import ADMIN_TOKEN, AppClient, auth, live_server, make_settings, new_org


class Receiver:
    """An HTTP endpoint that verifies Standard Webhooks signatures and records what arrived."""

    def __init__(self) -> None:
        self.secret: str | None = None
        self.fail_first = 0
        self.always_fail = False
        self.requests: list[dict[str, Any]] = []
        self.verified: list[dict[str, Any]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.requests.append({"headers": headers, "body": body})
        status = 204
        if self.always_fail or len(self.requests) <= self.fail_first:
            status = 503
        else:
            try:
                payload = Webhook(self.secret or "whsec_AAAA").verify(body, headers)
            except WebhookVerificationError:
                status = 400
            else:
                self.verified.append({"id": headers["webhook-id"], **payload})
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def of(self, org_id: str, type_: str | None = None) -> list[dict[str, Any]]:
        return [
            p
            for p in self.verified
            if p["data"].get("organization_id") == org_id and (type_ is None or p["type"] == type_)
        ]


async def wait_for(probe: Callable[[], Awaitable[Any] | Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"not met within {timeout} s (last: {last!r})")


@asynccontextmanager
async def serve_app(
    workdir: Path, db_url: str, redis_url: str, flush_interval: float = 0.3, **notifications: Any
) -> AsyncIterator[AppClient]:
    settings = make_settings(workdir, db_url, redis_url, flush_interval=flush_interval)
    settings.notifications = NotificationSettings(**{"retry_delay": 0.2, **notifications})
    app = create_app(settings)
    async with live_server(app) as base, AppClient(app, base_url=base) as client:
        client.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
        yield client


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    rec = Receiver()
    async with live_server(rec) as url:
        yield rec, url


async def register(
    client: AppClient, url: str, org_id: str, events: list[str] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"url": f"{url}/hooks", "organization_id": org_id}
    if events is not None:
        body["events"] = events
    resp = await client.post("/v1/webhook-endpoints", json=body)
    assert resp.status_code == 201, resp.text
    return resp.json()  # type: ignore[no-any-return]


async def consume(client: AppClient, org_id: str, category: str, quantity: int) -> dict[str, Any]:
    resp = await client.post(
        "/v1/quotas/consume",
        json={"organization_id": org_id, "items": [{"category": category, "quantity": quantity}]},
    )
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


async def test_endpoints_are_registered_listed_rotated_and_deleted_per_tenant(
    workdir: Path, redis_server: EmbeddedRedis, sqlite_url: str
) -> None:
    async with serve_app(workdir, sqlite_url, redis_server.url, flush_interval=3600) as client:
        org, other = await new_org(client), await new_org(client)
        key = (await client.post(f"/v1/organizations/{org['id']}/api-keys", json={})).json()["secret"]
        created = await client.post(
            "/v1/webhook-endpoints",
            json={"url": "https://hooks.example.com/tollgate", "events": ["usage.threshold"]},
            headers=auth(key),
        )
        assert created.status_code == 201, created.text
        endpoint = created.json()
        assert endpoint["secret"].startswith("whsec_") and endpoint["organization_id"] == org["id"]
        Webhook(endpoint["secret"])  # a valid Standard Webhooks secret

        listed = (await client.get("/v1/webhook-endpoints", headers=auth(key))).json()
        assert [e["id"] for e in listed["items"]] == [endpoint["id"]]
        assert "secret" not in listed["items"][0]

        # another org's key neither sees nor registers for this org
        other_key = (await client.post(f"/v1/organizations/{other['id']}/api-keys", json={})).json()["secret"]
        assert (
            await client.get(f"/v1/webhook-endpoints/{endpoint['id']}", headers=auth(other_key))
        ).status_code == 404
        stolen = await client.post(
            "/v1/webhook-endpoints",
            json={"url": "https://evil.example.com/", "organization_id": org["id"]},
            headers=auth(other_key),
        )
        assert stolen.status_code == 403

        rotated = await client.post(f"/v1/webhook-endpoints/{endpoint['id']}/rotate", headers=auth(key))
        assert rotated.status_code == 200 and rotated.json()["secret"] != endpoint["secret"]

        bad = await client.post("/v1/webhook-endpoints", json={"url": "ftp://example.com/x"})
        assert bad.status_code == 422 and bad.json()["error"] == "invalid_endpoint_url"
        unknown = await client.post(
            "/v1/webhook-endpoints", json={"url": "https://example.com/x", "events": ["usage.nope"]}
        )
        assert unknown.status_code == 422 and unknown.json()["error"] == "unknown_event_type"

        client.app.state.ctx.settings.notifications.allow_private_urls = False  # production's default
        try:
            for url in ("http://127.0.0.1:9/x", "http://10.1.2.3/x", "http://[::1]/x", "http://localhost/x"):
                private = await client.post("/v1/webhook-endpoints", json={"url": url})
                assert private.status_code == 422, url
                assert private.json()["error"] == "endpoint_address_not_allowed"
        finally:
            client.app.state.ctx.settings.notifications.allow_private_urls = None

        assert (
            await client.delete(f"/v1/webhook-endpoints/{endpoint['id']}", headers=auth(key))
        ).status_code == 204
        assert (await client.get(f"/v1/webhook-endpoints/{endpoint['id']}")).status_code == 404


async def test_thresholds_fire_exactly_once_under_concurrent_consumes_and_after_restart(
    workdir: Path, redis_server: EmbeddedRedis, sqlite_url: str, receiver: tuple[Receiver, str]
) -> None:
    rec, url = receiver
    async with serve_app(workdir, sqlite_url, redis_server.url) as client:
        org = await new_org(client)  # free: 5,000 errors, 50 replays
        endpoint = await register(client, url, org["id"], ["usage.threshold"])
        rec.secret = endpoint["secret"]

        # 60 concurrent consumes of 100 errors race past 80% and 100% of the allowance
        results = await asyncio.gather(*(consume(client, org["id"], "error", 100) for _ in range(60)))
        assert sum(r["accepted"] for r in results) == 50
        # and the detector itself races: five concurrent runs over the same org
        ctx = client.app.state.ctx
        await asyncio.gather(*(usage_flushed(ctx, {org["id"]}) for _ in range(5)))

        await wait_for(lambda: len(rec.of(org["id"])) >= 2)
        await asyncio.sleep(1.5)  # several more flushes: nothing fires again
        events = rec.of(org["id"])
        assert sorted(e["data"]["threshold"] for e in events) == [80, 100]
        assert {e["data"]["category"] for e in events} == {"error"}
        assert len({e["id"] for e in events}) == 2
        hundred = next(e for e in events if e["data"]["threshold"] == 100)
        assert hundred["data"]["used"] == 5000 and hundred["data"]["limit"] == 5000

    # a restart (new process state, same database): old thresholds stay fired, new ones fire once
    async with serve_app(workdir, sqlite_url, redis_server.url) as client:
        await consume(client, org["id"], "error", 1)  # refused, still at 100%
        await consume(client, org["id"], "replay", 45)  # 90% of 50 replays
        await wait_for(lambda: rec.of(org["id"])[2:])
        await asyncio.sleep(1.0)
        # delivery is at least once (a retry after a lost answer repeats the webhook-id): count
        # events by id, as a receiver does
        events = list({e["id"]: e for e in rec.of(org["id"])}.values())
        assert sorted((e["data"]["category"], e["data"]["threshold"]) for e in events) == [
            ("error", 80),
            ("error", 100),
            ("replay", 80),
        ]
    assert all(r["headers"]["webhook-signature"].startswith("v1,") for r in rec.requests)


async def test_a_failing_receiver_is_retried_with_backoff_until_it_succeeds(
    workdir: Path, redis_server: EmbeddedRedis, sqlite_url: str, receiver: tuple[Receiver, str]
) -> None:
    rec, url = receiver
    rec.fail_first = 2
    async with serve_app(workdir, sqlite_url, redis_server.url, retry_delay=0.3) as client:
        org = await new_org(client)
        endpoint = await register(client, url, org["id"])
        rec.secret = endpoint["secret"]
        await consume(client, org["id"], "replay", 40)  # 80%

        await wait_for(lambda: rec.of(org["id"], "usage.threshold"), timeout=20)
        ids = [r["headers"]["webhook-id"] for r in rec.requests]
        assert len(ids) == 3 and len(set(ids)) == 1  # the same message, retried twice
        times = [int(r["headers"]["webhook-timestamp"]) for r in rec.requests]
        assert times == sorted(times)

        async def delivered() -> Any:
            page = (await client.get(f"/v1/webhook-endpoints/{endpoint['id']}/deliveries")).json()
            return page if page["items"] and page["items"][0]["status"] == "succeeded" else None

        log = await wait_for(delivered)
        item = log["items"][0]
        assert item["attempts"] == 3 and item["last_status_code"] == 204 and item["type"] == "usage.threshold"
        assert item["webhook_id"] == ids[0]


async def test_an_endpoint_failing_for_too_long_is_disabled(
    workdir: Path, redis_server: EmbeddedRedis, sqlite_url: str, receiver: tuple[Receiver, str]
) -> None:
    rec, url = receiver
    rec.always_fail = True
    async with serve_app(workdir, sqlite_url, redis_server.url, retry_delay=0.2, disable_after=1.0) as client:
        org = await new_org(client)
        endpoint = await register(client, url, org["id"])
        rec.secret = endpoint["secret"]
        await consume(client, org["id"], "replay", 50)  # 80% and 100% at once

        async def disabled() -> Any:
            body = (await client.get(f"/v1/webhook-endpoints/{endpoint['id']}")).json()
            return body if not body["enabled"] else None

        body = await wait_for(disabled, timeout=20)
        assert "failed continuously" in body["disabled_reason"]
        log = (await client.get(f"/v1/webhook-endpoints/{endpoint['id']}/deliveries")).json()
        assert log["total"] == 2 and {d["status"] for d in log["items"]} == {"failed"}
        assert all(d["last_status_code"] == 503 for d in log["items"] if d["attempts"])
        seen = len(rec.requests)
        await asyncio.sleep(1.0)
        assert len(rec.requests) == seen  # nothing more is sent to a disabled endpoint


async def test_plan_changes_from_the_audit_trail_are_notified(
    workdir: Path, redis_server: EmbeddedRedis, sqlite_url: str, receiver: tuple[Receiver, str]
) -> None:
    rec, url = receiver
    async with serve_app(workdir, sqlite_url, redis_server.url, flush_interval=3600) as client:
        org = await new_org(client)
        endpoint = await register(client, url, org["id"], ["plan.changed", "billing.suspended"])
        rec.secret = endpoint["secret"]
        assert (
            await client.post(f"/v1/organizations/{org['id']}/plan", json={"plan": "team"})
        ).status_code == 200
        assert (await client.post(f"/v1/organizations/{org['id']}/suspend", json={})).status_code in (
            200,
            201,
        )
        await wait_for(lambda: len(rec.of(org["id"])) >= 2, timeout=20)
        by_type = {e["type"]: e for e in rec.of(org["id"])}
        assert by_type["plan.changed"]["data"]["to"] == "team@v1"
        assert by_type["billing.suspended"]["data"]["to"] == "suspended"
        payload = json.loads(rec.requests[0]["body"])
        assert set(payload) == {"type", "timestamp", "data"}
        assert uuid.UUID(endpoint["id"])
