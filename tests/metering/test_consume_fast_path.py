"""``/v1/quotas/consume[/batch]`` answer well-formed bodies on a fast path (fastpath.py) and hand
anything else to the Litestar handler: both must give the same answers, headers and errors."""

from __future__ import annotations

import json
from typing import Any

from litestar.testing import AsyncTestClient

from tests.conftest import auth, new_org

Client = AsyncTestClient[Any]


def _body(org: dict[str, Any], quantity: Any) -> dict[str, Any]:
    return {
        "organization_id": org["id"],
        "items": [{"category": "error", "quantity": quantity}, {"category": "transaction"}],
    }


async def test_strict_and_lenient_bodies_get_the_same_answer(sqlite_client: Client) -> None:
    """``"quantity": "3"`` does not decode strictly (fast path) but Litestar coerces it: the two
    bodies must be answered alike, counted alike, with the same headers, single and batched."""
    org = await new_org(sqlite_client)  # free: 5,000 errors
    answers = []
    for quantity in (3, "3", 6_000, "6000"):
        one = await sqlite_client.post("/v1/quotas/consume", json=_body(org, quantity))
        batch = await sqlite_client.post(
            "/v1/quotas/consume/batch", json={"requests": [_body(org, quantity)] * 2}
        )
        assert one.status_code == batch.status_code == 200
        answers.append((one, batch))
    for (strict_one, strict_batch), (lenient_one, lenient_batch) in (answers[0:2], answers[2:4]):
        for strict, lenient in ((strict_one, lenient_one), (strict_batch, lenient_batch)):
            assert strict.headers.get("retry-after") == lenient.headers.get("retry-after")
            assert strict.headers.get("x-sentry-rate-limits") == lenient.headers.get("x-sentry-rate-limits")
            assert strict.headers["content-type"] == lenient.headers["content-type"]
            assert strict.headers["content-length"] == lenient.headers["content-length"]
    used = [one.json()["items"][0]["remaining"] for one, _ in answers[:2]]
    assert used == [4_997, 4_988]  # 3 + 2 x 3 (batch) + 3: the lenient body was counted too
    denied = answers[2][0]
    assert denied.json()["items"][0]["reason"] == "usage_exceeded"
    assert denied.headers["x-sentry-rate-limits"] == "300:error:organization:usage_exceeded"


async def test_errors_keep_request_id_and_error_shape(sqlite_client: Client) -> None:
    org = await new_org(sqlite_client)
    rid = {"X-Request-ID": "fast-path-1"}
    # raised on the fast path after a strict decode: service error, auth error
    too_big = await sqlite_client.post("/v1/quotas/consume", json=_body(org, 10**12), headers=rid)
    assert too_big.status_code == 422 and too_big.json()["error"] == "invalid_quantity"
    assert too_big.headers["x-request-id"] == "fast-path-1"
    unknown = await sqlite_client.post(
        "/v1/quotas/consume/batch",
        json={"requests": [{"organization_id": org["id"], "items": [{"category": "nope"}]}]},
        headers=rid,
    )
    assert unknown.status_code == 422 and unknown.json()["error"] == "unknown_category"
    assert unknown.headers["x-request-id"] == "fast-path-1"
    anonymous = await sqlite_client.post(
        "/v1/quotas/consume",
        json=_body(org, 1),
        headers={**rid, "Authorization": "Bearer wrong"},
    )
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "invalid_credentials"
    assert anonymous.headers["x-request-id"] == "fast-path-1"
    # bodies the fast path leaves to Litestar: validation errors as before, even unauthenticated
    cases = {
        b"": "validation_error",
        b"[]": "validation_error",
        b'{"organization_id": 1}': "validation_error",
        b"{not json": "http_error",
    }
    for raw, code in cases.items():
        bad = await sqlite_client.post(
            "/v1/quotas/consume",
            content=raw,
            headers={**rid, "Content-Type": "application/json", **auth("wrong")},
        )
        assert bad.status_code == 400, raw
        assert bad.json()["error"] == code, (raw, bad.json())
        assert bad.headers["x-request-id"] == "fast-path-1"
    big = json.dumps({"requests": [_body(org, 1)] * 1000, "pad": " " * 1_000_000})
    too_large = await sqlite_client.post(
        "/v1/quotas/consume/batch", content=big, headers={"Content-Type": "application/json"}
    )
    assert too_large.status_code == 400 and too_large.json()["error"] == "validation_error"
