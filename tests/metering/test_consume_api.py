"""The meter as an ingest service calls it: over HTTP, with a real Redis."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient

from app.clock import ManualClock
from app.main import create_app
from tests.conftest import auth, live_server, make_settings, new_org

Client = AsyncTestClient[Any]


async def consume(client: Any, org: dict[str, Any], *items: tuple[str, int], **extra: Any) -> httpx.Response:
    return await client.post(
        "/v1/quotas/consume",
        json={
            "organization_id": org["id"],
            "items": [{"category": c, "quantity": q} for c, q in items],
            **extra,
        },
    )


def usage_of(body: dict[str, Any], category: str) -> dict[str, Any]:
    return next(c for c in body["categories"] if c["category"] == category)


async def test_first_event_over_the_limit_is_refused_in_the_same_call(sqlite_client: Client) -> None:
    org = await new_org(sqlite_client)  # free: 5,000 errors
    ok = await consume(sqlite_client, org, ("error", 4_999))
    assert ok.status_code == 200 and ok.json()["accepted"] is True
    assert "x-sentry-rate-limits" not in ok.headers
    resp = await consume(sqlite_client, org, ("error", 2), ("error", 1))
    body = resp.json()
    assert [i["accepted"] for i in body["items"]] == [False, True]
    denied = body["items"][0]
    assert denied["reason"] == "usage_exceeded" and denied["remaining"] == 1
    assert denied["limit"] == 5_000 and denied["retry_after"] == 300  # capped like Relay
    assert denied["period_end"] == org_period_end(org)
    assert resp.headers["retry-after"] == "300"
    assert resp.headers["x-sentry-rate-limits"] == "300:error:organization:usage_exceeded"
    # exhausted categories are announced on successful answers too
    tx = await consume(sqlite_client, org, ("transaction", 1))
    assert tx.json()["accepted"] is True
    assert tx.headers["x-sentry-rate-limits"] == "300:error:organization:usage_exceeded"
    assert "retry-after" not in tx.headers
    usage = (await sqlite_client.get(f"/v1/organizations/{org['id']}/usage")).json()
    err = usage_of(usage, "error")
    assert (err["used"], err["remaining"], err["refused"]) == (5_000, 0, {"usage_exceeded": 2})


def org_period_end(org: dict[str, Any]) -> int:
    return int(datetime.fromisoformat(org["current_period"]["end"]).timestamp())


async def test_header_groups_categories_and_writes_all_as_empty(sqlite_client: Client) -> None:
    org = await new_org(sqlite_client)
    await sqlite_client.patch(
        f"/v1/organizations/{org['id']}", json={"overrides": {"quotas": {"error": 1, "replay": 1}}}
    )
    resp = await consume(sqlite_client, org, ("error", 2), ("replay", 2))
    assert resp.headers["x-sentry-rate-limits"] == "300:error;replay:organization:usage_exceeded"
    await sqlite_client.post(f"/v1/organizations/{org['id']}/suspend")
    suspended = await consume(sqlite_client, org, ("transaction", 1))
    assert suspended.json()["items"][0]["reason"] == "suspended"
    assert suspended.headers["x-sentry-rate-limits"] == "300::organization:suspended"
    await sqlite_client.post(f"/v1/organizations/{org['id']}/reactivate")
    assert (await consume(sqlite_client, org, ("transaction", 1))).json()["accepted"] is True


async def test_upgrade_applies_at_once_and_usage_so_far_counts(sqlite_client: Client) -> None:
    org = await new_org(sqlite_client)
    await consume(sqlite_client, org, ("error", 5_000))
    assert (await consume(sqlite_client, org, ("error", 1))).json()["accepted"] is False
    await sqlite_client.post(f"/v1/organizations/{org['id']}/plan", json={"plan": "team"})
    after = (await consume(sqlite_client, org, ("error", 1))).json()
    assert after["accepted"] is True
    assert after["items"][0]["remaining"] == 50_000 - 5_001
    # and a downgrade applies at once too: 5,001 used is over the free allowance
    await sqlite_client.post(f"/v1/organizations/{org['id']}/plan", json={"plan": "free"})
    again = (await consume(sqlite_client, org, ("error", 1))).json()
    assert again["accepted"] is False and again["items"][0]["reason"] == "usage_exceeded"


async def test_on_demand_budget_for_paid_plans(sqlite_client: Client) -> None:
    org = await new_org(sqlite_client, plan="team")
    oid = org["id"]
    # 10 included errors; 0.029 cents each beyond; a 1 cent budget buys 34 more
    await sqlite_client.patch(
        f"/v1/organizations/{oid}",
        json={"overrides": {"quotas": {"error": 10}}, "on_demand_budget_cents": 1, "spike_protection": False},
    )
    first = (await consume(sqlite_client, org, ("error", 10))).json()["items"][0]
    assert first["source"] == "allowance"
    spill = (await consume(sqlite_client, org, ("error", 34))).json()["items"][0]
    assert spill["accepted"] and spill["source"] == "on_demand"
    out = await consume(sqlite_client, org, ("error", 1))
    assert out.json()["items"][0]["reason"] == "on_demand_exhausted"
    assert out.headers["x-sentry-rate-limits"] == "300:error:organization:on_demand_exhausted"
    usage = (await sqlite_client.get(f"/v1/organizations/{oid}/usage")).json()
    err = usage_of(usage, "error")
    assert (err["used"], err["on_demand_used"]) == (44, 34)
    assert usage["on_demand_spent_cents"] == pytest.approx(34 * 0.029)
    # the free plan stops hard whatever the budget
    free = await new_org(sqlite_client)
    await sqlite_client.patch(
        f"/v1/organizations/{free['id']}",
        json={"overrides": {"quotas": {"error": 1}}, "on_demand_budget_cents": 10_000},
    )
    await consume(sqlite_client, free, ("error", 1))
    assert (await consume(sqlite_client, free, ("error", 1))).json()["items"][0]["reason"] == "usage_exceeded"


async def test_spike_protection_pause_and_reset(sqlite_client: Client) -> None:
    org = await new_org(sqlite_client, plan="team")
    oid = org["id"]
    await sqlite_client.patch(f"/v1/organizations/{oid}", json={"overrides": {"quotas": {"replay": 100}}})
    # burst capacity is 10% of the month's allowance: 10 replays at once
    assert (await consume(sqlite_client, org, ("replay", 10))).json()["accepted"] is True
    spike = await consume(sqlite_client, org, ("replay", 5))
    item = spike.json()["items"][0]
    assert item["reason"] == "spike_protection" and 1 <= item["retry_after"] <= 300
    assert "spike_protection" in spike.headers["x-sentry-rate-limits"]
    reset = await sqlite_client.post(f"/v1/organizations/{oid}/spike-protection/reset")
    assert reset.status_code == 200
    assert (await consume(sqlite_client, org, ("replay", 5))).json()["accepted"] is True
    paused = await sqlite_client.post(f"/v1/organizations/{oid}/spike-protection/pause", json={"minutes": 30})
    assert paused.json()["spike_paused_until"] is not None
    assert (await consume(sqlite_client, org, ("replay", 60))).json()["accepted"] is True
    kinds = [e["kind"] for e in (await sqlite_client.get(f"/v1/organizations/{oid}/audit")).json()["items"]]
    assert "spike_protection.paused" in kinds and "spike_protection.reset" in kinds


async def test_project_caps_set_by_the_orgs_admin(sqlite_client: Client) -> None:
    org = await new_org(sqlite_client)
    key = (await sqlite_client.post(f"/v1/organizations/{org['id']}/api-keys", json={})).json()
    await sqlite_client.patch(
        f"/v1/organizations/{org['id']}",
        headers=auth(key["secret"]),
        json={"project_caps": {"noisy": {"error": 2}}},
    )
    resp = await consume(sqlite_client, org, ("error", 2), project="noisy")
    assert resp.json()["accepted"] is True
    capped = await consume(sqlite_client, org, ("error", 1), project="noisy")
    assert capped.json()["items"][0]["reason"] == "project_cap"
    assert capped.headers["x-sentry-rate-limits"] == "300:error:project:project_cap"
    assert (await consume(sqlite_client, org, ("error", 100), project="quiet")).json()["accepted"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"items": [{"category": "error"}]}, 404, "organization_not_found"),
        ({"items": [{"category": "spans", "quantity": 1}]}, 422, "unknown_category"),
        ({"items": [{"category": "error", "quantity": -1}]}, 400, "validation_error"),
        ({"items": [{"category": "error", "quantity": 10**13}]}, 400, "validation_error"),
        ({"items": [{"category": "error", "quantity": 2_000_000_000}]}, 422, "invalid_quantity"),
        ({"items": []}, 400, "validation_error"),
        ({"items": [{"category": "error", "quantity": 1.5}]}, 400, "validation_error"),
    ],
)
async def test_bad_requests_are_refused_and_count_nothing(
    sqlite_client: Client,
    body: dict,  # type: ignore[type-arg]
    status: int,
    code: str,
) -> None:
    org = await new_org(sqlite_client)
    target = str(uuid.uuid4()) if status == 404 else org["id"]
    # a valid item rides along: the whole request is refused, so it must not count either
    extra = [{"category": "error", "quantity": 5}] if status != 404 and body["items"] else []
    bad_items = [*body["items"], *extra]
    resp = await sqlite_client.post(
        "/v1/quotas/consume", json={"organization_id": target, "items": bad_items}
    )
    assert resp.status_code == status, resp.text
    assert resp.json()["error"] == code
    usage = (await sqlite_client.get(f"/v1/organizations/{org['id']}/usage")).json()
    assert usage_of(usage, "error")["used"] == 0


async def test_org_keys_cannot_consume_but_ingest_tokens_can(sqlite_client: Client) -> None:
    org = await new_org(sqlite_client)
    key = (await sqlite_client.post(f"/v1/organizations/{org['id']}/api-keys", json={})).json()
    body = {"organization_id": org["id"], "items": [{"category": "error"}]}
    refused = await sqlite_client.post("/v1/quotas/consume", json=body, headers=auth(key["secret"]))
    assert refused.status_code == 403
    ingest = (
        await sqlite_client.post("/v1/service-tokens", json={"name": "relay", "scope": "ingest"})
    ).json()
    ok = await sqlite_client.post("/v1/quotas/consume", json=body, headers=auth(ingest["secret"]))
    assert ok.status_code == 200 and ok.json()["accepted"] is True
    no_auth = await sqlite_client.post("/v1/quotas/consume", json=body, headers={"Authorization": ""})
    assert no_auth.status_code == 401


async def test_idempotency_key_counts_once(sqlite_client: Client) -> None:
    org = await new_org(sqlite_client)
    first = await consume(sqlite_client, org, ("error", 7), idempotency_key="env-123")
    again = await consume(sqlite_client, org, ("error", 7), idempotency_key="env-123")
    assert again.json()["replayed"] is True and first.json()["items"] == again.json()["items"]
    other = await consume(sqlite_client, org, ("error", 1), ("replay", 1), idempotency_key="env-123")
    assert other.status_code == 409 and other.json()["error"] == "idempotency_key_reused"
    usage = (await sqlite_client.get(f"/v1/organizations/{org['id']}/usage")).json()
    assert usage_of(usage, "error")["used"] == 7


async def test_allow_partial_grants_what_fits(sqlite_client: Client) -> None:
    org = await new_org(sqlite_client)
    await consume(sqlite_client, org, ("replay", 45))
    whole = await consume(sqlite_client, org, ("replay", 10))
    assert whole.json()["items"][0]["accepted"] is False
    part = (await consume(sqlite_client, org, ("replay", 10), allow_partial=True)).json()
    assert part["items"][0]["granted"] == 5 and part["items"][0]["remaining"] == 0


async def test_batch_of_many_orgs_in_one_request(sqlite_client: Client) -> None:
    orgs = [await new_org(sqlite_client) for _ in range(3)]
    await consume(sqlite_client, orgs[2], ("replay", 50))
    resp = await sqlite_client.post(
        "/v1/quotas/consume/batch",
        json={
            "requests": [
                {"organization_id": o["id"], "items": [{"category": "replay", "quantity": 1}]} for o in orgs
            ]
        },
    )
    results = resp.json()["results"]
    assert [r["accepted"] for r in results] == [True, True, False]
    assert [r["organization_id"] for r in results] == [o["id"] for o in orgs]
    assert resp.headers["x-sentry-rate-limits"] == "300:replay:organization:usage_exceeded"


async def test_refund_returns_units(sqlite_client: Client) -> None:
    org = await new_org(sqlite_client)
    c = (await consume(sqlite_client, org, ("replay", 50))).json()
    assert (await consume(sqlite_client, org, ("replay", 1))).json()["accepted"] is False
    r = await sqlite_client.post(
        "/v1/quotas/refund",
        json={
            "organization_id": org["id"],
            "items": [{"category": "replay", "quantity": 3}],
            "period_start": c["period_start"],
            "idempotency_key": "drop-1",
        },
    )
    assert r.status_code == 200 and r.json()["refunded"] == {"replay": 3}
    again = await sqlite_client.post(
        "/v1/quotas/refund",
        json={
            "organization_id": org["id"],
            "items": [{"category": "replay", "quantity": 3}],
            "period_start": c["period_start"],
            "idempotency_key": "drop-1",
        },
    )
    assert again.json()["refunded"] == {"replay": 3}
    usage = (await sqlite_client.get(f"/v1/organizations/{org['id']}/usage")).json()
    assert usage_of(usage, "replay")["used"] == 47 and usage_of(usage, "replay")["refunded"] == 3
    assert (await consume(sqlite_client, org, ("replay", 3))).json()["accepted"] is True


async def test_leases_never_exceed_the_limit_and_return_exactly(sqlite_client: Client) -> None:
    org = await new_org(sqlite_client)  # 50 replays
    leases = []
    for _ in range(4):
        resp = await sqlite_client.post(
            "/v1/quotas/lease", json={"organization_id": org["id"], "category": "replay", "quantity": 20}
        )
        leases.append(resp.json())
    assert [lease["granted"] for lease in leases] == [20, 20, 10, 0]
    assert leases[3]["lease_id"] is None and leases[3]["reason"] == "usage_exceeded"
    for lease, used in zip(leases[:3], (20, 5, 0), strict=True):
        back = await sqlite_client.post(
            f"/v1/quotas/lease/{lease['lease_id']}/return",
            json={"organization_id": org["id"], "unused": lease["granted"] - used},
        )
        assert back.status_code == 200
    twice = await sqlite_client.post(
        f"/v1/quotas/lease/{leases[0]['lease_id']}/return", json={"organization_id": org["id"], "unused": 20}
    )
    assert twice.status_code == 200 and twice.json()["refunded"] == {"replay": 0}
    usage = (await sqlite_client.get(f"/v1/organizations/{org['id']}/usage")).json()
    assert usage_of(usage, "replay")["used"] == 25
    unknown = await sqlite_client.post(
        "/v1/quotas/lease/nope/return", json={"organization_id": org["id"], "unused": 1}
    )
    assert unknown.status_code == 404


async def test_hundreds_of_concurrent_callers_get_exactly_the_limit(
    workdir: Any,
    redis_server: Any,
    sqlite_url: str,
) -> None:
    """On the real server (uvicorn on a port): 400 callers race for 50 replays."""
    app = create_app(make_settings(workdir, sqlite_url, redis_server.url))
    async with (
        live_server(app) as base,
        httpx.AsyncClient(
            base_url=base,
            headers={"Authorization": "Bearer test-admin-token-0123456789"},
            limits=httpx.Limits(max_connections=200),
            timeout=30,
        ) as http,
    ):
        org = (await http.post("/v1/organizations", json={"name": "race"})).json()
        body = {"organization_id": org["id"], "items": [{"category": "replay", "quantity": 1}]}
        results = await asyncio.gather(*(http.post("/v1/quotas/consume", json=body) for _ in range(400)))
        assert {r.status_code for r in results} == {200}
        accepted = sum(r.json()["accepted"] for r in results)
        assert accepted == 50
        usage = (await http.get(f"/v1/organizations/{org['id']}/usage")).json()
        assert usage_of(usage, "replay")["used"] == 50
        assert usage_of(usage, "replay")["refused"]["usage_exceeded"] == 350


async def test_periods_roll_over_and_refunds_land_in_their_own_period(make_client: Any) -> None:
    clock = ManualClock(datetime(2026, 1, 15, 12, 0, tzinfo=UTC))
    async with make_client(clock=clock) as client:
        org = await new_org(client)
        first = (await consume(client, org, ("replay", 50))).json()
        assert first["period_end"] == int(datetime(2026, 2, 15, 12, tzinfo=UTC).timestamp())
        assert (await consume(client, org, ("replay", 1))).json()["accepted"] is False
        clock.set(datetime(2026, 2, 15, 12, 0, 1, tzinfo=UTC))
        fresh = (await consume(client, org, ("replay", 10))).json()
        assert fresh["accepted"] is True and fresh["items"][0]["remaining"] == 40
        assert fresh["period_start"] == first["period_end"]
        late = await client.post(
            "/v1/quotas/refund",
            json={
                "organization_id": org["id"],
                "items": [{"category": "replay", "quantity": 5}],
                "period_start": first["period_start"],
            },
        )
        assert late.json() == {
            "organization_id": org["id"],
            "period_start": first["period_start"],
            "refunded": {"replay": 5},
        }
        usage = (await client.get(f"/v1/organizations/{org['id']}/usage")).json()
        assert usage_of(usage, "replay")["used"] == 10  # the current period is untouched
        clock.set(datetime(2026, 4, 1, tzinfo=UTC))
        gone = await client.post(
            "/v1/quotas/refund",
            json={
                "organization_id": org["id"],
                "items": [{"category": "replay", "quantity": 1}],
                "period_start": first["period_start"],
            },
        )
        assert gone.status_code == 422 and gone.json()["error"] == "period_expired"
        _ = timedelta


async def test_batch_runs_one_script_call_per_org_with_items_in_order(sqlite_client: Client) -> None:
    a, b = await new_org(sqlite_client), await new_org(sqlite_client)  # free: 50 replays
    await consume(sqlite_client, a, ("replay", 48))
    meter = sqlite_client.app.state.ctx.meter  # type: ignore[attr-defined]
    calls = meter.redis_calls
    asks = [(a, 1), (b, 1), (a, 2), (a, 1), (a, 1), (b, 3)]
    resp = await sqlite_client.post(
        "/v1/quotas/consume/batch",
        json={
            "requests": [
                {"organization_id": o["id"], "items": [{"category": "replay", "quantity": q}]}
                for o, q in asks
            ]
        },
    )
    results = resp.json()["results"]
    assert meter.redis_calls - calls == 2  # one script call per org, not per request
    assert [r["organization_id"] for r in results] == [o["id"] for o, _ in asks]
    # in order, each item all-or-nothing: 49, refused (2 > 1 left), 50, refused
    assert [r["accepted"] for r in results] == [True, True, False, True, False, True]
    assert [r["items"][0]["remaining"] for r in results] == [1, 49, 1, 0, 0, 46]
    assert results[2]["items"][0]["reason"] == "usage_exceeded"
    for org, used in ((a, 50), (b, 4)):
        usage = (await sqlite_client.get(f"/v1/organizations/{org['id']}/usage")).json()
        assert usage_of(usage, "replay")["used"] == used
