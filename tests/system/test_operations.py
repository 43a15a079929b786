"""What an operator relies on: health, readiness, metrics, OpenAPI, request ids, JSON errors."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

Client = AsyncTestClient[Any]


async def test_health_and_ready(sqlite_client: Client) -> None:
    assert (await sqlite_client.get("/health")).json() == {"status": "ok"}
    ready = await sqlite_client.get("/ready")
    assert ready.status_code == 200
    assert ready.json() == {"database": "ok", "redis": "ok", "status": "ready"}


async def test_ready_reports_a_dead_redis(make_client: Any) -> None:
    async with make_client(redis_url="redis://127.0.0.1:1/0") as client:
        ready = await client.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["redis"].startswith("unavailable")
        assert ready.json()["database"] == "ok"
        assert (await client.get("/health")).status_code == 200


async def test_openapi_documents_every_route(sqlite_client: Client) -> None:
    spec = (await sqlite_client.get("/schema/openapi.json")).json()
    paths = set(spec["paths"])
    for path in [
        "/v1/organizations",
        "/v1/organizations/{organization_id}",
        "/v1/plans",
        "/v1/quotas/consume",
        "/v1/quotas/refund",
        "/v1/quotas/lease",
        "/v1/organizations/{organization_id}/usage",
        "/v1/service-tokens",
        "/health",
        "/ready",
    ]:
        assert path in paths, path
    assert "bearer" in spec["components"]["securitySchemes"]


async def test_metrics_count_quota_decisions(sqlite_client: Client) -> None:
    from tests.conftest import new_org

    org = await new_org(sqlite_client)
    await sqlite_client.post(
        "/v1/quotas/consume",
        json={"organization_id": org["id"], "items": [{"category": "replay", "quantity": 51}]},
    )
    resp = await sqlite_client.get("/metrics")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    line = next(
        x
        for x in resp.text.splitlines()
        if x.startswith('tollgate_quota_items_total{category="replay",outcome="usage_exceeded"}')
    )
    assert float(line.split()[-1]) >= 1


async def test_request_id_is_echoed_or_assigned(sqlite_client: Client) -> None:
    echoed = await sqlite_client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    assigned = await sqlite_client.get("/health")
    assert len(assigned.headers["x-request-id"]) == 32


async def test_plans_catalog_endpoint(sqlite_client: Client) -> None:
    body = (await sqlite_client.get("/v1/plans")).json()
    assert [p["name"] for p in body["plans"]] == ["free", "team", "business", "enterprise"]
    free = body["plans"][0]
    assert free["quotas"]["error"] == 5_000 and free["units"]["attachment"] == "byte"
    assert body["default_plan"] == "free"
