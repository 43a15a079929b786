"""Heroku plays the add-on end to end against the running app: provision -> the config vars reach the
org and the meter -> plan change -> SSO into the billing page -> deprovision; and async provisioning
completed by the worker through a stand-in Heroku on 127.0.0.1."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from sqlalchemy import text

from tests.conftest import auth
from tests.marketplace.conftest import ADDONS_JSON, Heroku, heroku_for

CONFIG_VAR = re.compile(r"^[A-Z][0-9A-Z_]+$")


async def ingest_token(client: Any) -> str:
    resp = await client.post("/v1/service-tokens", json={"name": "ingest-proxy", "scope": "ingest"})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["secret"])


async def consume(client: Any, token: str, org_id: str, quantity: int) -> dict[str, Any]:
    resp = await client.post(
        "/v1/quotas/consume",
        json={"organization_id": org_id, "items": [{"category": "error", "quantity": quantity}]},
        headers=auth(token),
    )
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


def session_cookie(resp: Any) -> str:
    header = resp.headers["set-cookie"]
    match = re.match(r"tollgate_session=([^;]+)", header)
    assert match, header
    return match.group(1)


async def test_heroku_plays_the_whole_lifecycle(heroku: Heroku) -> None:
    client = heroku.client
    assert heroku.fake is not None
    client.cookies.clear()

    # -- provision (sync plan): 200 with our own id and the config vars
    started = time.perf_counter()
    body, resp = await heroku.provision("free", grant=True)
    provision_seconds = time.perf_counter() - started
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/vnd.heroku-addons+json")
    out = resp.json()
    assert set(out) == {"id", "config", "message"}
    resource_id, config = out["id"], out["config"]
    assert resource_id != body["uuid"] and body["uuid"] not in resource_id
    assert set(config) == {"TOLLGATE_URL", "TOLLGATE_ORG_ID", "TOLLGATE_API_KEY"}
    assert all(CONFIG_VAR.match(k) and isinstance(v, str) for k, v in config.items())
    assert config["TOLLGATE_URL"] == client.app.state.ctx.settings.server.public_url
    org_id, api_key = config["TOLLGATE_ORG_ID"], config["TOLLGATE_API_KEY"]
    assert provision_seconds < 1.0, provision_seconds

    # the org credential reaches the control-plane API, for this org only
    org = await client.get(f"/v1/organizations/{org_id}", headers=auth(api_key))
    assert org.status_code == 200
    assert org.json()["plan"] == "free" and org.json()["billing_source"] == "marketplace"
    assert org.json()["status"] == "active"

    # -- the ingest service meters the org named in the config vars: free allows 5,000 errors
    token = await ingest_token(client)
    assert (await consume(client, token, org_id, 4_999))["accepted"] is True
    over = await consume(client, token, org_id, 2)
    assert over["accepted"] is False and over["items"][0]["reason"] == "usage_exceeded"

    # -- plan change: new limits at once, same config back
    started = time.perf_counter()
    changed = await client.put(
        f"/marketplace/heroku/resources/{resource_id}", json={"plan": "team"}, headers=heroku.auth()
    )
    change_seconds = time.perf_counter() - started
    assert changed.status_code == 200, changed.text
    assert changed.json()["config"] == config and "free" in changed.json()["message"]
    assert change_seconds < 1.0, change_seconds
    assert (await consume(client, token, org_id, 2))["accepted"] is True
    assert (await client.get(f"/v1/organizations/{org_id}")).json()["plan"] == "team"

    # -- the grant was exchanged in the background (client secret + code, once)
    exchange = await wait_for(lambda: heroku.fake.calls_for(body["uuid"]))  # type: ignore[union-attr]
    assert exchange[0].path == "/oauth/token" and exchange[0].status == 200
    assert exchange[0].body["grant_type"] == "authorization_code"
    assert exchange[0].body["code"] == body["oauth_grant"]["code"]

    # -- SSO: 302 to the org's billing page with a session cookie bound to the org
    sso = await heroku.post_sso(heroku.sso(body["uuid"]))
    assert sso.status_code == 302, sso.text
    assert sso.headers["location"] == f"/billing/{org_id}"
    set_cookie = sso.headers["set-cookie"].lower()
    assert "httponly" in set_cookie and "samesite=lax" in set_cookie and "path=/billing" in set_cookie
    cookie = session_cookie(sso)
    client.cookies.clear()
    page = await client.get(f"/billing/{org_id}", headers={"Cookie": f"tollgate_session={cookie}"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'data-testid="plan"><strong>Team</strong>' in page.text and "5,001" in page.text

    # -- deprovision: 204, the meter refuses, the data stays
    started = time.perf_counter()
    gone = await client.delete(f"/marketplace/heroku/resources/{resource_id}", headers=heroku.auth())
    deprovision_seconds = time.perf_counter() - started
    assert gone.status_code == 204 and gone.content == b""
    assert deprovision_seconds < 1.0, deprovision_seconds
    refused = await consume(client, token, org_id, 1)
    assert refused["accepted"] is False and refused["items"][0]["reason"] == "suspended"
    kept = (await client.get(f"/v1/organizations/{org_id}")).json()
    assert kept["status"] == "deprovisioned" and kept["plan"] == "team"
    usage = (await client.get(f"/v1/organizations/{org_id}/usage")).json()
    assert next(c for c in usage["categories"] if c["category"] == "error")["used"] == 5_001
    assert (await client.get(f"/v1/organizations/{org_id}", headers=auth(api_key))).status_code == 401
    page = await client.get(f"/billing/{org_id}", headers={"Cookie": f"tollgate_session={cookie}"})
    assert page.status_code == 403

    # repeats and late calls: JSON 410, never a 5xx
    again = await client.delete(f"/marketplace/heroku/resources/{resource_id}", headers=heroku.auth())
    assert again.status_code == 410 and again.json()["message"]
    late = await client.put(
        f"/marketplace/heroku/resources/{resource_id}", json={"plan": "business"}, headers=heroku.auth()
    )
    assert late.status_code == 410 and late.json()["message"]
    assert (await heroku.post_sso(heroku.sso(body["uuid"]))).status_code == 403

    # -- the operator sees what Heroku asked, when, and what we answered; no secrets on record
    inbox = await client.get("/v1/marketplace/requests", params={"external_id": body["uuid"]})
    assert inbox.status_code == 200
    entries = inbox.json()["items"]
    actions = {e["action"]: e for e in entries}
    assert {"provision", "oauth_exchange", "sso"} <= set(actions)
    assert actions["provision"]["status_code"] == 200 and actions["provision"]["received_at"]
    assert actions["provision"]["payload"]["plan"] == "free"
    assert "code" not in actions["provision"]["payload"]["oauth_grant"]
    assert actions["provision"]["payload"]["log_input_url"] == "[redacted]"
    by_ref = (await client.get("/v1/marketplace/requests", params={"external_id": resource_id})).json()
    deprovisions = [e for e in by_ref["items"] if e["action"] == "deprovision"]
    assert deprovisions[0]["deliveries"] == 2 and deprovisions[0]["status_code"] == 410
    flat = str(entries) + str(by_ref)
    assert api_key not in flat and body["oauth_grant"]["code"] not in flat
    print(  # the figures the issue asks for ("well under 3 s")
        f"\nprovision {provision_seconds * 1000:.0f} ms, plan change {change_seconds * 1000:.0f} ms, "
        f"deprovision {deprovision_seconds * 1000:.0f} ms"
    )


async def wait_for(probe: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError("timed out waiting for the worker")


async def test_async_plan_is_completed_by_the_worker_through_heroku(heroku: Heroku) -> None:
    client, fake = heroku.client, heroku.fake
    assert fake is not None
    body, resp = await heroku.provision("team-async", grant=True)
    assert resp.status_code == 202, resp.text
    out = resp.json()
    assert set(out) == {"id", "message"} and out["id"] != body["uuid"]

    await wait_for(lambda: fake.addons[body["uuid"]]["state"] == "provisioned")
    calls = fake.calls_for(body["uuid"])
    assert [(c.method, c.path, c.status) for c in calls] == [
        ("POST", "/oauth/token", 200),
        ("PATCH", f"/addons/{body['uuid']}/config", 200),
        ("POST", f"/addons/{body['uuid']}/actions/provision", 200),
    ]
    token_call, config_call, provision_call = calls
    assert token_call.body["client_secret"] == "heroku-test-oauth-client-secret"
    access = next(t for t, a in fake.tokens.items() if a == body["uuid"])
    for call in (config_call, provision_call):
        assert call.headers["Authorization"] == f"Bearer {access}"
        assert call.headers["Accept"] == "application/vnd.heroku+json; version=3"
    pushed = fake.addons[body["uuid"]]["config"]
    assert set(pushed) == {"TOLLGATE_URL", "TOLLGATE_ORG_ID", "TOLLGATE_API_KEY"}

    # the pushed credential works; the resource is provisioned; a replay now answers with that config
    org = await client.get(
        f"/v1/organizations/{pushed['TOLLGATE_ORG_ID']}", headers=auth(pushed["TOLLGATE_API_KEY"])
    )
    assert org.status_code == 200 and org.json()["plan"] == "team"
    resources = (await client.get("/v1/marketplace/resources", params={"limit": 200})).json()["items"]
    mine = next(r for r in resources if r["external_id"] == body["uuid"])
    assert mine["id"] == out["id"] and mine["has_oauth_token"] is True
    for _ in range(100):  # the state flips right after Heroku's answer
        mine = next(
            r
            for r in (await client.get("/v1/marketplace/resources", params={"limit": 200})).json()["items"]
            if r["external_id"] == body["uuid"]
        )
        if mine["state"] == "provisioned":
            break
        await asyncio.sleep(0.05)
    assert mine["state"] == "provisioned"
    replay = await client.post(
        "/marketplace/heroku/resources", json=body, headers={**heroku.auth(), "Accept": "application/json"}
    )
    assert replay.status_code == 200 and replay.json()["id"] == out["id"]
    assert replay.json()["config"] == pushed

    # tokens and the credential are stored encrypted, never in clear
    async with client.app.state.ctx.sessions() as session:
        row = (
            (
                await session.execute(
                    text("SELECT * FROM marketplace_resource WHERE external_id = :e"), {"e": body["uuid"]}
                )
            )
            .mappings()
            .one()
        )
    stored = " ".join(str(v) for v in row.values())
    assert row["access_token_encrypted"] and row["refresh_token_encrypted"] and row["config_encrypted"]
    assert access not in stored and f"r-{access}" not in stored and pushed["TOLLGATE_API_KEY"] not in stored
    assert row["oauth_grant_encrypted"] is None  # the one-time grant is spent and dropped


async def test_core_flow_on_each_database(client: Any) -> None:
    """On embedded-default credentials (generated once and kept), SQLite and PostgreSQL."""
    heroku = heroku_for(client)
    body, resp = await heroku.provision("business")
    assert resp.status_code == 200, resp.text
    first = resp.json()
    replay = await client.post("/marketplace/heroku/resources", json=body, headers=heroku.auth())
    assert replay.status_code == 200 and replay.json()["id"] == first["id"]
    assert replay.json()["config"] == first["config"]

    org_id = first["config"]["TOLLGATE_ORG_ID"]
    audit = (await client.get(f"/v1/organizations/{org_id}/audit")).json()["items"]
    assert [e["kind"] for e in audit].count("organization.created") == 1

    changed = await client.put(
        f"/marketplace/heroku/resources/{body['uuid']}", json={"plan": "team"}, headers=heroku.auth()
    )
    assert changed.status_code == 200 and changed.json()["config"] == first["config"]
    org = (await client.get(f"/v1/organizations/{org_id}")).json()
    assert org["plan"] == "team" and org["quotas"]["error"] == 50_000

    sso = await heroku.post_sso(heroku.sso(body["uuid"], kind="resource"))
    assert sso.status_code == 302 and sso.headers["location"] == f"/billing/{org_id}"

    gone = await client.delete(f"/marketplace/heroku/resources/{first['id']}", headers=heroku.auth())
    assert gone.status_code == 204
    again = await client.delete(f"/marketplace/heroku/resources/{body['uuid']}", headers=heroku.auth())
    assert again.status_code == 410
    assert (await client.get(f"/v1/organizations/{org_id}")).json()["status"] == "deprovisioned"
    assert ADDONS_JSON  # both media types are exercised in test_heroku_refusals
