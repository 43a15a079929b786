"""No write route answers 5xx to a malformed body: every POST/PUT/PATCH the app serves gets a dozen
broken payloads, as the control plane, an org key and without credentials."""

from __future__ import annotations

import re
import uuid
from typing import Any

from tests.conftest import auth, new_org

MALFORMED: list[Any] = [
    b"{",
    b"[]",
    b"null",
    b"42",
    b'"text"',
    b"\xff\xfe\x00",
    b"{}",
    b'{"a": ' + b"[" * 200,
    {"organization_id": "nope", "items": "x"},
    {"plan": 5, "name": None},
    {"url": "not a url", "events": 3},
    {"quantity": -1, "category": ""},
    {"x": "y" * 10_000},
]


def _write_routes(app: Any) -> list[tuple[str, str]]:
    out = []
    for route in app.routes:
        for method in sorted(getattr(route, "methods", ())):
            if method in ("POST", "PUT", "PATCH"):
                out.append((method, route.path))
    return out


async def test_no_write_route_answers_5xx_to_malformed_input(sqlite_client: Any) -> None:
    org = await new_org(sqlite_client)
    key = (await sqlite_client.post(f"/v1/organizations/{org['id']}/api-keys", json={})).json()
    routes = _write_routes(sqlite_client.app)
    assert len(routes) >= 15
    checked = 0
    for method, path in routes:
        concrete = re.sub(r"\{organization_id:uuid\}", org["id"], path)
        concrete = re.sub(r"\{[a-z_]+:uuid\}", str(uuid.uuid4()), concrete)
        concrete = re.sub(r"\{[a-z_]+(:str)?\}", "unknown-id", concrete)
        for headers in ({}, auth(key["secret"]), {"Authorization": ""}):
            for body in MALFORMED:
                kwargs: dict[str, Any] = (
                    {"content": body, "headers": {"Content-Type": "application/json", **headers}}
                    if isinstance(body, bytes)
                    else {"json": body, "headers": headers}
                )
                resp = await sqlite_client.request(method, concrete, **kwargs)
                # 503 is honest for a capability not configured here (e.g. Stripe); 500 never is
                ok = resp.status_code < 500 or (resp.status_code == 503 and "error" in resp.json())
                assert ok, (method, concrete, body, resp.status_code, resp.text)
                checked += 1
    assert checked >= 15 * 3 * len(MALFORMED)
    after = (await sqlite_client.get(f"/v1/organizations/{org['id']}")).json()
    assert after["plan"] == "free"  # no malformed plan change went through
