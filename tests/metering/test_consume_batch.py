"""``/v1/quotas/consume/batch`` answers each request as consecutive ``/v1/quotas/consume`` calls
would: same items decided in order, same denials, replays and project caps, counted alike; and a
batch answered from the denial cache matches single calls answered from it. Each scenario runs on
twin organizations (same plan, same overrides): one twin gets the batch, the other the single calls.
"""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

from tests.conftest import auth, new_org

Client = AsyncTestClient[Any]


async def _twins(client: Client, overrides: dict[str, Any], caps: dict[str, Any] | None = None) -> list[str]:
    ids = []
    for _ in range(2):
        org = await new_org(client)  # free: no spike protection, no on-demand
        resp = await client.patch(f"/v1/organizations/{org['id']}", json={"overrides": {"quotas": overrides}})
        assert resp.status_code == 200, resp.text
        if caps:
            key = (await client.post(f"/v1/organizations/{org['id']}/api-keys", json={})).json()
            resp = await client.patch(
                f"/v1/organizations/{org['id']}", headers=auth(key["secret"]), json={"project_caps": caps}
            )
            assert resp.status_code == 200, resp.text
        ids.append(org["id"])
    return ids


def _request(org: str, *items: tuple[str, int], **extra: Any) -> dict[str, Any]:
    return {"organization_id": org, "items": [{"category": c, "quantity": q} for c, q in items], **extra}


async def _batch_and_singles(
    client: Client, twins: dict[str, list[str]], asks: list[tuple[str, dict[str, Any]]]
) -> tuple[Any, list[Any], list[dict[str, Any]]]:
    """``asks`` as (org name, request with ``organization_id`` left out): the batch goes to the first
    twin of each org, the same requests one by one to the second. Answers with the org id blanked."""

    def body(twin: int) -> list[dict[str, Any]]:
        return [{"organization_id": twins[name][twin], **req} for name, req in asks]

    batch = await client.post("/v1/quotas/consume/batch", json={"requests": body(0)})
    assert batch.status_code == 200, batch.text
    singles = [await client.post("/v1/quotas/consume", json=one) for one in body(1)]
    assert all(s.status_code == 200 for s in singles), [s.text for s in singles]

    def blank(answer: dict[str, Any]) -> dict[str, Any]:
        # twins created a second apart may have periods a second apart (free periods start at
        # the org's creation): compare period ends relative to the period start
        start = answer["period_start"]
        items = [{**i, "period_end": i["period_end"] - start} for i in answer["items"]]
        return {
            **answer,
            "organization_id": "-",
            "period_start": 0,
            "period_end": answer["period_end"] - start,
            "items": items,
        }

    return (
        batch,
        [blank(r) for r in batch.json()["results"]],
        [blank(s.json()) for s in singles],
    )


async def test_batch_answers_each_request_as_consecutive_calls(make_client: Any) -> None:
    # without the denial cache, single calls all reach the script, as the batch's grouped calls do
    async with make_client(denial_cache_seconds=0) as client:
        twins = {
            "small": await _twins(client, {"error": 5, "replay": 3}),
            "capped": await _twins(client, {"error": 100}, caps={"noisy": {"error": 2}}),
            "roomy": await _twins(client, {}),
        }
        for name in twins:  # a retried request: its key was used before the batch
            for twin in twins[name]:
                await client.post(
                    "/v1/quotas/consume",
                    json=_request(twin, ("error", 1), idempotency_key=f"retry-{name}"),
                )
        e1, r1 = ("error", 1), ("replay", 1)
        # (a batch groups an org's requests by ``allow_partial`` and keeps idempotent ones apart,
        # each call at its first request: these asks put no org's calls out of request order)
        asks = [
            ("small", _request("", ("replay", 5), allow_partial=True)),  # 3 of 5
            ("small", _request("", e1)),
            ("roomy", _request("", e1, idempotency_key="retry-roomy")),  # replayed
            ("capped", _request("", e1, project="noisy")),
            ("small", _request("", ("error", 2), r1)),  # replay exhausted: refused
            ("roomy", _request("", ("transaction", 7), idempotency_key="fresh")),
            ("capped", _request("", ("error", 2), project="noisy")),  # over the project cap
            ("small", _request("", ("error", 3))),  # 1 left of 5: refused
            ("small", _request("", e1, ("replay", 3))),  # the last error
            ("capped", _request("", e1)),  # outside the project: accepted
            ("roomy", _request("", e1, ("attachment", 0))),
            ("small", _request("", e1, r1)),  # both exhausted now
        ]
        for _ in range(3):  # single-item requests of one org, as ingest batches mostly are
            asks += [("roomy", _request("", e1)), ("small", _request("", r1)), ("capped", _request("", e1))]
        asks = [(name, {k: v for k, v in req.items() if k != "organization_id"}) for name, req in asks]
        batch, from_batch, from_singles = await _batch_and_singles(client, twins, asks)
        assert from_batch == from_singles
        assert [r["accepted"] for r in from_batch[:12]] == [
            True, True, True, True, False, True, False, False, False, True, True, False,
        ]  # fmt: skip
        assert from_batch[2]["replayed"] is True and from_batch[0]["items"][0]["granted"] == 3
        assert batch.headers["retry-after"] == "300"
        assert batch.headers["x-sentry-rate-limits"] == (
            "300:error:project:project_cap, 300:error;replay:organization:usage_exceeded"
        )
        for name, (a, b) in twins.items():
            usage = [(await client.get(f"/v1/organizations/{o}/usage")).json() for o in (a, b)]
            for u in usage:
                u.update(organization_id="-", period_start=0, period_end=0)
            assert usage[0] == usage[1], name


async def test_batch_answered_from_the_denial_cache_like_single_calls(sqlite_client: Client) -> None:
    twins = {
        "out": await _twins(sqlite_client, {"error": 2, "replay": 1}),
        "roomy": await _twins(sqlite_client, {}),
    }
    for twin in twins["out"]:  # exhaust both categories: the next refusals come from the cache
        resp = await sqlite_client.post(
            "/v1/quotas/consume", json=_request(twin, ("error", 2), ("replay", 1))
        )
        assert resp.headers["x-sentry-rate-limits"] == "300:error;replay:organization:usage_exceeded"
    e1, r1 = ("error", 1), ("replay", 1)
    # the whole "out" group is exhausted (answered at once), then a group with an unexhausted item
    cached = [("out", _request("", e1)), ("roomy", _request("", e1)), ("out", _request("", r1, e1))]
    cached += [("out", _request("", ("error", 3)))] * 20
    mixed = [("out", _request("", e1)), ("out", _request("", ("transaction", 1))), ("out", _request("", r1))]
    for asks in (cached, mixed):
        asks = [(name, {k: v for k, v in req.items() if k != "organization_id"}) for name, req in asks]
        batch, from_batch, from_singles = await _batch_and_singles(sqlite_client, twins, asks)
        assert from_batch == from_singles
        assert batch.headers["x-sentry-rate-limits"] == "300:error;replay:organization:usage_exceeded"
    assert [r["accepted"] for r in from_batch] == [False, True, False]
    meter = sqlite_client.app.state.ctx.meter  # type: ignore[attr-defined]
    await meter.flush_refusals()
    usage = [(await sqlite_client.get(f"/v1/organizations/{o}/usage")).json() for o in twins["out"]]
    refused = [{u["category"]: u["refused"] for u in us["categories"] if u["refused"]} for us in usage]
    assert refused[0] == refused[1] == {"error": {"usage_exceeded": 63}, "replay": {"usage_exceeded": 2}}
