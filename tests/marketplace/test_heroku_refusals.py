"""Every refusal Heroku's contract and the issue ask for, over HTTP against the running app."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from tests.marketplace.conftest import ADDONS_JSON, Heroku

RESOURCES = "/marketplace/heroku/resources"


async def provisioned(heroku: Heroku, plan: str = "team") -> tuple[dict[str, Any], dict[str, Any]]:
    body, resp = await heroku.provision(plan)
    assert resp.status_code == 200, resp.text
    return body, resp.json()


# ---------------------------------------------------------------------------- auth first
async def test_bad_or_missing_credentials_get_401_on_every_route(heroku: Heroku) -> None:
    client = heroku.client
    live_body, live = await provisioned(heroku)
    dead_body, dead = await provisioned(heroku)
    assert (await client.delete(f"{RESOURCES}/{dead['id']}", headers=heroku.auth())).status_code == 204

    wrong = [
        {"Accept": ADDONS_JSON},  # no Authorization at all
        heroku.auth(password="not-the-password"),
        heroku.auth(user="someone-else"),
        {"Authorization": "Bearer test-admin-token-0123456789"},  # the admin token is not Heroku
        {"Authorization": "Basic !!!not-base64"},
    ]
    ids = [live["id"], live_body["uuid"], dead["id"], dead_body["uuid"], str(uuid.uuid4()), "not-a-uuid"]
    saved = client.headers.pop("Authorization")  # the test client's default admin bearer
    try:
        for headers in wrong:
            calls = [client.post(RESOURCES, json={"not": "even valid"}, headers=headers)]
            for rid in ids:
                calls.append(client.put(f"{RESOURCES}/{rid}", json={"plan": "business"}, headers=headers))
                calls.append(client.delete(f"{RESOURCES}/{rid}", headers=headers))
            for resp in await asyncio.gather(*calls):
                assert resp.status_code == 401, (headers, resp.request.url, resp.text)
                assert resp.headers["www-authenticate"].startswith("Basic realm=")
                assert resp.json()["message"]
    finally:
        client.headers["Authorization"] = saved
    # nothing changed behind the refusals
    still = await client.put(f"{RESOURCES}/{live['id']}", json={"plan": "team"}, headers=heroku.auth())
    assert still.status_code == 200 and "nothing changed" in still.json()["message"]


# ---------------------------------------------------------------------------- provision
async def test_unknown_plan_or_region_is_a_422_with_a_message_and_creates_nothing(heroku: Heroku) -> None:
    body, resp = await heroku.provision("platinum")
    assert resp.status_code == 422 and "plan" in resp.json()["message"]
    assert resp.headers["content-type"].startswith("application/vnd.heroku-addons+json")
    # the same uuid with a good plan still provisions: the refusal left no claim behind
    fixed = await heroku.client.post(RESOURCES, json={**body, "plan": "team"}, headers=heroku.auth())
    assert fixed.status_code == 200, fixed.text

    _, resp = await heroku.provision("team", region="amazon-web-services::sa-east-1")
    assert resp.status_code == 422 and "region" in resp.json()["message"]
    _, resp = await heroku.provision("team", region="eu")  # a manifest region name is fine
    assert resp.status_code == 200


@pytest.mark.parametrize("body", [{"plan": "team"}, {"uuid": "x"}, {"uuid": 5, "plan": "team"}, []])
async def test_malformed_provision_is_a_422_json_message(heroku: Heroku, body: Any) -> None:
    resp = await heroku.client.post(RESOURCES, json=body, headers=heroku.auth())
    assert resp.status_code == 422 and resp.json()["message"]


async def test_unknown_fields_and_string_options_are_accepted(heroku: Heroku) -> None:
    _, resp = await heroku.provision(
        "team",
        options={"foo": "bar", "flag": "true", "n": 3},
        brand_new_field={"nested": [1, 2]},
        log_drain_token="d.01234567",
        oauth_grant=None,
    )
    assert resp.status_code == 200, resp.text


async def test_both_accept_headers_are_served(heroku: Heroku) -> None:
    body = {"uuid": str(uuid.uuid4()), "plan": "team", "region": "amazon-web-services::us-east-1"}
    plain = await heroku.client.post(
        RESOURCES, json=body, headers={**heroku.auth(), "Accept": "application/json"}
    )
    assert plain.status_code == 200 and plain.headers["content-type"].startswith("application/json")
    addons = await heroku.client.post(RESOURCES, json=body, headers=heroku.auth())
    assert addons.status_code == 200 and addons.headers["content-type"] == ADDONS_JSON
    assert addons.json() == plain.json()


async def test_provision_is_idempotent_on_uuid(heroku: Heroku) -> None:
    client = heroku.client
    body, first = await heroku.provision("business")
    second = await client.post(RESOURCES, json=body, headers=heroku.auth())
    assert first.status_code == second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    assert second.json()["config"] == first.json()["config"]
    org_id = first.json()["config"]["TOLLGATE_ORG_ID"]
    audit = [e["kind"] for e in (await client.get(f"/v1/organizations/{org_id}/audit")).json()["items"]]
    assert audit.count("organization.created") == 1 and audit.count("api_key.created") == 1

    # concurrent duplicate deliveries: one resource, one org, one answer
    body = {"uuid": str(uuid.uuid4()), "plan": "team", "region": "amazon-web-services::us-east-1"}
    answers = await asyncio.gather(
        *(client.post(RESOURCES, json=body, headers=heroku.auth()) for _ in range(4))
    )
    assert {r.status_code for r in answers} == {200}, [r.text for r in answers]
    assert len({r.json()["id"] for r in answers}) == 1
    assert len({r.json()["config"]["TOLLGATE_API_KEY"] for r in answers}) == 1

    # the inbox shows one request delivered several times
    inbox = (await client.get("/v1/marketplace/requests", params={"external_id": body["uuid"]})).json()
    provisions = [e for e in inbox["items"] if e["action"] == "provision"]
    assert len(provisions) == 1 and provisions[0]["deliveries"] == 4


# ---------------------------------------------------------------------------- plan change
async def test_plan_change_refusals_and_no_ops(heroku: Heroku) -> None:
    client = heroku.client
    body, out = await provisioned(heroku, "team")
    org_id = out["config"]["TOLLGATE_ORG_ID"]

    same = await client.put(f"{RESOURCES}/{body['uuid']}", json={"plan": "team"}, headers=heroku.auth())
    assert same.status_code == 200 and same.json()["config"] == out["config"]
    audit = [e["kind"] for e in (await client.get(f"/v1/organizations/{org_id}/audit")).json()["items"]]
    assert "plan.changed" not in audit

    unknown = await client.put(f"{RESOURCES}/{out['id']}", json={"plan": "platinum"}, headers=heroku.auth())
    assert unknown.status_code == 422 and unknown.json()["message"]
    assert (await client.get(f"/v1/organizations/{org_id}")).json()["plan"] == "team"

    remapped = await client.put(
        f"{RESOURCES}/{out['id']}",
        json={"plan": "legacy", "heroku_id": "app123@heroku.com"},
        headers=heroku.auth(),
    )
    assert remapped.status_code == 200
    assert (await client.get(f"/v1/organizations/{org_id}")).json()["plan"] == "business"

    missing = await client.put(f"{RESOURCES}/{uuid.uuid4()}", json={"plan": "team"}, headers=heroku.auth())
    assert missing.status_code == 404 and missing.json()["message"]
    bad = await client.put(f"{RESOURCES}/{out['id']}", json={"plan": ""}, headers=heroku.auth())
    assert bad.status_code == 422


async def test_deprovision_of_an_unknown_resource_is_a_json_404(heroku: Heroku) -> None:
    resp = await heroku.client.delete(f"{RESOURCES}/{uuid.uuid4()}", headers=heroku.auth())
    assert resp.status_code == 404 and resp.json()["message"]


# ---------------------------------------------------------------------------- SSO
async def test_sso_accepts_each_token_kind(heroku: Heroku) -> None:
    body, out = await provisioned(heroku)
    org_id = out["config"]["TOLLGATE_ORG_ID"]
    for form in (
        heroku.sso(body["uuid"], kind="user_scoped"),
        heroku.sso(body["uuid"], kind="resource", ts=int(time.time()) - 1),
        heroku.sso(out["id"], kind="v1"),  # v1 names the id we returned at provisioning
    ):
        resp = await heroku.post_sso(form)
        assert resp.status_code == 302, (form, resp.text)
        assert resp.headers["location"] == f"/billing/{org_id}"


async def test_sso_refusals(heroku: Heroku) -> None:
    body, out = await provisioned(heroku)
    now = int(time.time())
    refused = {
        "stale": heroku.sso(body["uuid"], ts=now - 301),
        "future": heroku.sso(body["uuid"], ts=now + 60),
        "tampered": {**heroku.sso(body["uuid"]), "user_scoped_resource_token": "f" * 64},
        "other email": {**heroku.sso(body["uuid"]), "email": "mallory@example.com"},
        "wrong salt": Heroku(heroku.client, "tollgate", "", "not-the-salt").sso(body["uuid"]),
        "no token": {
            k: v for k, v in heroku.sso(body["uuid"], kind="resource").items() if k != "resource_token"
        },
        "unknown resource": heroku.sso(str(uuid.uuid4())),
        "v1 with heroku uuid forged": {**heroku.sso(out["id"], kind="v1"), "token": "0" * 40},
        "not a number": heroku.sso(body["uuid"], timestamp="yesterday"),
    }
    for name, form in refused.items():
        resp = await heroku.post_sso(form)
        assert resp.status_code == 403, (name, resp.text)
        assert "set-cookie" not in resp.headers

    # a sign-in form is good once: a replay is refused
    form = heroku.sso(body["uuid"])
    assert (await heroku.post_sso(form)).status_code == 302
    replay = await heroku.post_sso(form)
    assert replay.status_code == 403 and "set-cookie" not in replay.headers

    # a deprovisioned resource cannot be signed into
    assert (await heroku.client.delete(f"{RESOURCES}/{out['id']}", headers=heroku.auth())).status_code == 204
    assert (await heroku.post_sso(heroku.sso(body["uuid"]))).status_code == 403


# ---------------------------------------------------------------------------- the billing page
async def test_billing_page_needs_a_session_for_that_org(heroku: Heroku) -> None:
    client = heroku.client
    client.cookies.clear()
    a_body, a = await provisioned(heroku)
    _, b = await provisioned(heroku)
    a_org, b_org = a["config"]["TOLLGATE_ORG_ID"], b["config"]["TOLLGATE_ORG_ID"]
    sso = await heroku.post_sso(heroku.sso(a_body["uuid"]))
    client.cookies.clear()
    cookie = sso.headers["set-cookie"].split(";")[0].split("=", 1)[1]

    assert (await client.get(f"/billing/{a_org}")).status_code == 401
    forged = cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB")
    assert (
        await client.get(f"/billing/{a_org}", headers={"Cookie": f"tollgate_session={forged}"})
    ).status_code == 401
    other = await client.get(f"/billing/{b_org}", headers={"Cookie": f"tollgate_session={cookie}"})
    assert other.status_code == 403
    mine = await client.get(
        "/billing", headers={"Cookie": f"tollgate_session={cookie}"}, follow_redirects=False
    )
    assert mine.status_code in (301, 302, 307) and mine.headers["location"] == f"/billing/{a_org}"
    page = await client.get(f"/billing/{a_org}", headers={"Cookie": f"tollgate_session={cookie}"})
    assert page.status_code == 200 and 'data-testid="plan"><strong>Team</strong>' in page.text
