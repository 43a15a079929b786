"""The control plane's view: organizations, keys, tenancy, errors — on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from tests.conftest import auth, new_org

Client = AsyncTestClient[Any]


async def test_create_read_and_list_organizations(client: Client) -> None:
    org = await new_org(client, plan="team", slug=f"acme-{uuid.uuid4().hex[:6]}")
    assert org["plan"] == "team" and org["plan_version"] == 1 and org["status"] == "active"
    assert org["quotas"]["error"] == 50_000
    assert org["current_period"]["start"] < org["current_period"]["end"]
    assert org["spike_protection"] is True

    got = await client.get(f"/v1/organizations/{org['id']}")
    assert got.status_code == 200 and got.json()["slug"] == org["slug"]

    default = await new_org(client)
    assert default["plan"] == "free" and default["spike_protection"] is False

    page = await client.get("/v1/organizations", params={"limit": 1, "offset": 0})
    assert page.status_code == 200
    body = page.json()
    assert body["limit"] == 1 and len(body["items"]) == 1 and body["total"] >= 2
    second = (await client.get("/v1/organizations", params={"limit": 1, "offset": 1})).json()
    assert second["items"][0]["id"] != body["items"][0]["id"]


async def test_slug_is_derived_and_unique(client: Client) -> None:
    slug = f"dup-{uuid.uuid4().hex[:6]}"
    await new_org(client, slug=slug)
    dup = await client.post("/v1/organizations", json={"name": "x", "slug": slug})
    assert dup.status_code == 409 and dup.json()["error"] == "slug_taken"
    a = (await client.post("/v1/organizations", json={"name": "Same Name!"})).json()
    b = (await client.post("/v1/organizations", json={"name": "Same Name!"})).json()
    assert a["slug"].startswith("same-name") and b["slug"].startswith("same-name")
    assert a["slug"] != b["slug"]


async def test_unknown_plan_is_a_clear_422(client: Client) -> None:
    resp = await client.post("/v1/organizations", json={"name": "x", "plan": "platinum"})
    assert resp.status_code == 422
    assert resp.json()["error"] == "unknown_plan" and "platinum" in resp.json()["detail"]


async def test_patch_overrides_budget_and_spike_protection(client: Client) -> None:
    org = await new_org(client, plan="business")
    resp = await client.patch(
        f"/v1/organizations/{org['id']}",
        json={
            "name": "Renamed",
            "overrides": {"quotas": {"error": 1_000_000}},
            "on_demand_budget_cents": 12_345,
            "spike_protection": False,
        },
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["name"] == "Renamed" and body["quotas"]["error"] == 1_000_000
    assert body["on_demand_budget_cents"] == 12_345 and body["spike_protection"] is False
    bad = await client.patch(f"/v1/organizations/{org['id']}", json={"overrides": {"quotas": {"nope": 1}}})
    assert bad.status_code == 422 and bad.json()["error"] == "invalid_overrides"
    assert (await client.get(f"/v1/organizations/{org['id']}")).json()["quotas"][
        "error"
    ] == 1_000_000  # the refused patch changed nothing
    audit = (await client.get(f"/v1/organizations/{org['id']}/audit")).json()
    assert [e["kind"] for e in audit["items"]][:2] == [
        "organization.updated",
        "organization.created",
    ]


async def test_suspend_and_reactivate(client: Client) -> None:
    org = await new_org(client)
    s = await client.post(f"/v1/organizations/{org['id']}/suspend")
    assert s.status_code == 200 and s.json()["status"] == "suspended"
    r = await client.post(f"/v1/organizations/{org['id']}/reactivate")
    assert r.status_code == 200 and r.json()["status"] == "active"
    kinds = [e["kind"] for e in (await client.get(f"/v1/organizations/{org['id']}/audit")).json()["items"]]
    assert kinds.count("status.changed") == 2


async def test_api_keys_show_secret_once_list_prefix_and_revoke(client: Client) -> None:
    org = await new_org(client)
    created = await client.post(f"/v1/organizations/{org['id']}/api-keys", json={"name": "ci"})
    assert created.status_code == 201
    secret = created.json()["secret"]
    assert secret.startswith("tgk_") and len(secret) > 40
    listed = (await client.get(f"/v1/organizations/{org['id']}/api-keys")).json()
    assert [k["prefix"] for k in listed] == [created.json()["prefix"]]
    assert "secret" not in listed[0] and secret not in str(listed)

    own = await client.get(f"/v1/organizations/{org['id']}", headers=auth(secret))
    assert own.status_code == 200

    gone = await client.delete(f"/v1/organizations/{org['id']}/api-keys/{listed[0]['id']}")
    assert gone.status_code == 204
    refused = await client.get(f"/v1/organizations/{org['id']}", headers=auth(secret))
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_credentials"


async def test_another_orgs_key_gets_404_on_every_org_route(client: Client) -> None:
    victim = await new_org(client)
    attacker = await new_org(client)
    key = (await client.post(f"/v1/organizations/{attacker['id']}/api-keys", json={})).json()
    h = auth(key["secret"])
    vid = victim["id"]
    victim_key = (await client.post(f"/v1/organizations/{vid}/api-keys", json={})).json()
    routes = [
        ("GET", f"/v1/organizations/{vid}", None),
        ("PATCH", f"/v1/organizations/{vid}", {"name": "pwned"}),
        ("GET", f"/v1/organizations/{vid}/api-keys", None),
        ("POST", f"/v1/organizations/{vid}/api-keys", {"name": "x"}),
        ("DELETE", f"/v1/organizations/{vid}/api-keys/{victim_key['id']}", None),
        ("GET", f"/v1/organizations/{vid}/audit", None),
        ("GET", f"/v1/organizations/{vid}/usage", None),
        ("POST", f"/v1/organizations/{vid}/spike-protection/pause", {"minutes": 5}),
        ("POST", f"/v1/organizations/{vid}/spike-protection/reset", None),
    ]
    for method, path, body in routes:
        resp = await client.request(method, path, json=body, headers=h)
        assert resp.status_code == 404, (method, path, resp.status_code, resp.text)
        assert resp.json()["error"] == "organization_not_found"
    admin_only = [
        ("POST", f"/v1/organizations/{vid}/suspend", None),
        ("POST", f"/v1/organizations/{vid}/plan", {"plan": "team"}),
        ("POST", "/v1/organizations", {"name": "x"}),
        ("GET", "/v1/organizations", None),
    ]
    for method, path, body in admin_only:
        resp = await client.request(method, path, json=body, headers=h)
        assert resp.status_code == 403, (method, path, resp.text)
    victim_now = (await client.get(f"/v1/organizations/{vid}")).json()
    assert victim_now["name"] == victim["name"] and victim_now["status"] == "active"
    keys = (await client.get(f"/v1/organizations/{vid}/api-keys")).json()
    assert [k["id"] for k in keys] == [victim_key["id"]]


async def test_org_key_may_not_set_overrides(client: Client) -> None:
    org = await new_org(client)
    key = (await client.post(f"/v1/organizations/{org['id']}/api-keys", json={})).json()
    resp = await client.patch(
        f"/v1/organizations/{org['id']}",
        headers=auth(key["secret"]),
        json={"overrides": {"quotas": {"error": 10**9}}},
    )
    assert resp.status_code == 403
    ok = await client.patch(
        f"/v1/organizations/{org['id']}",
        headers=auth(key["secret"]),
        json={"project_caps": {"web": {"error": 10}}},
    )
    assert ok.status_code == 200 and ok.json()["project_caps"] == {"web": {"error": 10}}


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer nope", "Basic abc", "Bearer " + "x" * 500])
async def test_missing_or_bad_credentials_get_401(client: Client, header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {"Authorization": ""}
    resp = await client.get("/v1/organizations", headers=headers)
    assert resp.status_code == 401
    assert resp.json()["error"] in ("unauthorized", "invalid_credentials")


async def test_service_tokens_are_scoped(client: Client) -> None:
    created = await client.post("/v1/service-tokens", json={"name": "relay", "scope": "ingest"})
    assert created.status_code == 201
    ingest = created.json()["secret"]
    assert (
        await client.post("/v1/organizations", json={"name": "x"}, headers=auth(ingest))
    ).status_code == 403
    admin = (await client.post("/v1/service-tokens", json={"name": "ops", "scope": "admin"})).json()
    assert (await client.get("/v1/organizations", headers=auth(admin["secret"]))).status_code == 200
    listed = (await client.get("/v1/service-tokens")).json()
    assert {t["name"] for t in listed} >= {"relay", "ops"}
    assert all("secret" not in t for t in listed)
    assert (await client.delete(f"/v1/service-tokens/{admin['id']}")).status_code == 204
    assert (await client.get("/v1/organizations", headers=auth(admin["secret"]))).status_code == 401


MALFORMED: list[Any] = [
    b"{",
    b"[]",
    b"null",
    b"42",
    b'"string"',
    b"\xff\xfe",
    {"name": ""},
    {"name": 12},
    {"name": "x" * 1000},
    {"name": "x", "plan": 5},
    {"name": "x", "unknown": 1},
    {"name": "x", "slug": "UPPER CASE"},
    {"overrides": "nope"},
    {"on_demand_budget_cents": -1},
    {"spike_protection": "yes"},
    {"project_caps": {"p:1": {"error": 1}}},
    {"project_caps": {"web": {"error": -5}}},
    {"minutes": 0},
    {"scope": "root", "name": "x"},
    {"plan": None},
    {"name": None},
]


async def test_malformed_bodies_get_json_4xx_never_500(client: Client) -> None:
    org = await new_org(client)
    oid = org["id"]
    routes = [
        ("POST", "/v1/organizations"),
        ("PATCH", f"/v1/organizations/{oid}"),
        ("POST", f"/v1/organizations/{oid}/api-keys"),
        ("POST", f"/v1/organizations/{oid}/plan"),
        ("POST", f"/v1/organizations/{oid}/spike-protection/pause"),
        ("POST", "/v1/service-tokens"),
        ("POST", "/v1/quotas/consume"),
        ("POST", "/v1/quotas/consume/batch"),
        ("POST", "/v1/quotas/refund"),
        ("POST", "/v1/quotas/lease"),
    ]
    for method, path in routes:
        for body in MALFORMED:
            kwargs: dict[str, Any] = (
                {"content": body, "headers": {"Content-Type": "application/json"}}
                if isinstance(body, bytes)
                else {"json": body}
            )
            resp = await client.request(method, path, **kwargs)
            ok_for_route = resp.status_code < 300 and path.endswith(("/api-keys", oid))
            assert 400 <= resp.status_code < 500 or ok_for_route, (
                method,
                path,
                body,
                resp.status_code,
                resp.text,
            )
            assert resp.headers["content-type"].startswith("application/json")
            if resp.status_code >= 400:
                assert set(resp.json()) >= {"error", "detail"}
    after = (await client.get(f"/v1/organizations/{oid}")).json()
    assert after["plan"] == "free" and after["on_demand_budget_cents"] == 0


async def test_unknown_route_and_bad_uuid_are_json_404(client: Client) -> None:
    assert (await client.get("/v1/nothing-here")).json()["error"] == "not_found"
    resp = await client.get("/v1/organizations/not-a-uuid")
    assert resp.status_code in (400, 404) and "error" in resp.json()
    missing = await client.get(f"/v1/organizations/{uuid.uuid4()}")
    assert missing.status_code == 404 and missing.json()["error"] == "organization_not_found"
