"""Feature gates and the entitlements read, over HTTP on SQLite and PostgreSQL with a real Redis."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from tests.conftest import auth, new_org

Client = AsyncTestClient[Any]

FEATURES = (
    "integrations",
    "advanced_analytics",
    "custom_dashboards",
    "cross_project_issues",
    "sso",
    "compliance",
)
PLAN_FEATURES = {
    "free": set(),
    "team": {"integrations"},
    "business": {"integrations", "advanced_analytics", "custom_dashboards", "cross_project_issues"},
    "enterprise": set(FEATURES),
}


async def check(client: Client, org_id: str, feature: str, **headers: str) -> dict[str, Any]:
    resp = await client.post(
        "/v1/entitlements/check", json={"organization_id": org_id, "feature": feature}, headers=headers
    )
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


@pytest.mark.parametrize("plan", ["free", "team", "business", "enterprise"])
async def test_each_plan_gates_exactly_its_features(client: Client, plan: str) -> None:
    org = await new_org(client, plan=plan)
    for feature in FEATURES:
        answer = await check(client, org["id"], feature)
        assert answer["allowed"] is (feature in PLAN_FEATURES[plan]), (plan, feature, answer)
        assert answer["reason"] == ("entitled" if answer["allowed"] else "not_entitled")
    read = (await client.get(f"/v1/organizations/{org['id']}/entitlements")).json()
    assert read["plan"] == plan and read["version"] == 1 and read["status"] == "active"
    assert {f for f, s in read["features"].items() if s["enabled"]} == PLAN_FEATURES[plan]
    assert set(read["features"]) == set(FEATURES)
    members, retention = read["limits"]["members"], read["limits"]["retention_days"]
    assert members["value"] == (1 if plan == "free" else None) and members["used"] == 0
    assert retention == {
        "value": {"free": 30, "team": 90, "business": 90, "enterprise": 365}[plan],
        "unit": "days",
    }
    assert read["trial"] is None and read["notices"] == []


async def test_upgrade_to_is_the_cheapest_self_serve_plan_above_with_the_feature(client: Client) -> None:
    free = await new_org(client)
    expected = {
        "integrations": "team",
        "advanced_analytics": "business",
        "custom_dashboards": "business",
        "cross_project_issues": "business",
        "sso": None,  # enterprise only: not self-serve, so no upgrade prompt but "talk to sales"
        "compliance": None,
    }
    for feature, target in expected.items():
        assert (await check(client, free["id"], feature))["upgrade_to"] == target, feature
    read = (await client.get(f"/v1/organizations/{free['id']}/entitlements")).json()
    assert {f: s["upgrade_to"] for f, s in read["features"].items()} == expected

    team = await new_org(client, plan="team")
    assert (await check(client, team["id"], "integrations"))["upgrade_to"] is None  # allowed
    assert (await check(client, team["id"], "custom_dashboards"))["upgrade_to"] == "business"


async def test_overrides_grant_and_revoke_features_and_change_limits(client: Client) -> None:
    org = await new_org(client, plan="team")
    resp = await client.patch(
        f"/v1/organizations/{org['id']}",
        json={
            "overrides": {
                "features": {"sso": True, "integrations": False},
                "members": 5,
                "retention_days": 400,
            }
        },
    )
    assert resp.status_code == 200, resp.text
    assert (await check(client, org["id"], "sso"))["allowed"] is True
    revoked = await check(client, org["id"], "integrations")
    assert revoked == {"allowed": False, "reason": "not_entitled", "upgrade_to": "business"}
    read = (await client.get(f"/v1/organizations/{org['id']}/entitlements")).json()
    assert read["features"]["sso"]["enabled"] and not read["features"]["integrations"]["enabled"]
    # the read sees the override itself: no upgrade brings a revoked feature back
    assert read["features"]["integrations"]["upgrade_to"] is None
    assert read["limits"]["members"]["value"] == 5
    assert read["limits"]["retention_days"]["value"] == 400


async def test_a_plan_change_is_seen_by_the_next_check(client: Client) -> None:
    org = await new_org(client)
    assert (await check(client, org["id"], "advanced_analytics"))["allowed"] is False
    resp = await client.post(f"/v1/organizations/{org['id']}/plan", json={"plan": "business"})
    assert resp.status_code == 200, resp.text
    assert (await check(client, org["id"], "advanced_analytics"))["allowed"] is True
    await client.post(f"/v1/organizations/{org['id']}/suspend")
    assert await check(client, org["id"], "advanced_analytics") == {
        "allowed": False,
        "reason": "suspended",
        "upgrade_to": None,
    }


async def test_the_check_refuses_bad_input_and_other_tenants(client: Client) -> None:
    org = await new_org(client)
    unknown = await client.post(
        "/v1/entitlements/check", json={"organization_id": org["id"], "feature": "teleport"}
    )
    assert unknown.status_code == 422 and unknown.json()["error"] == "unknown_feature"
    assert "integrations" in unknown.json()["detail"]
    missing = await client.post(
        "/v1/entitlements/check",
        json={"organization_id": "00000000-0000-7000-8000-000000000000", "feature": "sso"},
    )
    assert missing.status_code == 404
    garbage = await client.post("/v1/entitlements/check", json={"organization_id": "x", "feature": "sso"})
    assert garbage.status_code == 400
    extra = await client.post(
        "/v1/entitlements/check", json={"organization_id": org["id"], "feature": "sso", "x": 1}
    )
    assert extra.status_code == 400

    key = (await client.post(f"/v1/organizations/{org['id']}/api-keys", json={})).json()["secret"]
    other = await new_org(client, plan="enterprise")
    own = await check(client, org["id"], "sso", **auth(key))
    assert own["allowed"] is False
    foreign = await client.post(
        "/v1/entitlements/check",
        json={"organization_id": other["id"], "feature": "sso"},
        headers=auth(key),
    )
    assert foreign.status_code == 404
    assert (
        await client.get(f"/v1/organizations/{other['id']}/entitlements", headers=auth(key))
    ).status_code == 404
    assert (
        await client.get(f"/v1/organizations/{org['id']}/entitlements", headers=auth(key))
    ).status_code == 200
    anonymous = await client.post(
        "/v1/entitlements/check",
        json={"organization_id": org["id"], "feature": "sso"},
        headers={"Authorization": ""},
    )
    assert anonymous.status_code == 401


async def test_etag_round_trip(client: Client) -> None:
    org = await new_org(client, plan="team")
    url = f"/v1/organizations/{org['id']}/entitlements"
    first = await client.get(url)
    etag = first.headers["etag"]
    assert first.status_code == 200 and etag.startswith('"') and etag.endswith('"')

    again = await client.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    weak = await client.get(url, headers={"If-None-Match": f'"nope", W/{etag}'})
    assert weak.status_code == 304

    await client.patch(f"/v1/organizations/{org['id']}", json={"overrides": {"features": {"sso": True}}})
    changed = await client.get(url, headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    assert changed.json()["features"]["sso"]["enabled"] is True
    assert (await client.get(url, headers={"If-None-Match": changed.headers["etag"]})).status_code == 304
