"""A small async client for ingest services, with optional local decisions from leases.

``TollgateClient`` calls the HTTP API (one round trip per consume, headers included).
``LeasingMeter`` sits in front of it: it reserves blocks of units (leases), decides locally from
them (a dict lookup per event), returns what it did not use, and shrinks the block near the limit
so the org's limit is never exceeded: the server grants leases partially and never beyond the
limit, and every unused unit goes back. While Tollgate is unreachable it keeps spending the leases
it holds (a *bounded* fail-open: at most what it holds), then applies ``when_unavailable``.

Usage::

    async with TollgateClient("http://tollgate:8000", token) as client:
        meter = LeasingMeter(client, block=500)
        if await meter.consume(org_id, "error"):
            ...  # accept the event
        await meter.close()  # returns unused units
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

import httpx


class TollgateUnavailable(Exception):
    """Tollgate could not be reached (or answered 5xx)."""


@dataclass(frozen=True, slots=True)
class ConsumeResult:
    accepted: bool
    items: list[dict[str, Any]]
    period_start: int
    degraded: bool
    rate_limits: str | None
    """``X-Sentry-Rate-Limits`` exactly as received: forward it to Sentry SDKs unchanged."""
    retry_after: int | None


@dataclass(slots=True)
class Lease:
    organization_id: str
    category: str
    lease_id: str | None
    granted: int
    left: int
    remaining: int | None
    """Allowance the server had left after granting this lease (``None``: unlimited)."""
    denied_until: float = 0.0
    taken_at: float = field(default_factory=time.monotonic)


class TollgateClient:
    def __init__(
        self, base_url: str, token: str, *, timeout: float = 2.0, http: httpx.AsyncClient | None = None
    ) -> None:
        self._http = http or httpx.AsyncClient(
            base_url=base_url,
            timeout=timeout,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
        )
        self._headers = {"Authorization": f"Bearer {token}"}

    async def __aenter__(self) -> TollgateClient:
        return self

    async def __aexit__(self, *exc: tuple[type[BaseException], BaseException, TracebackType]) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        try:
            resp = await self._http.post(path, json=body, headers=self._headers)
        except httpx.TransportError as exc:
            raise TollgateUnavailable(str(exc)) from exc
        if resp.status_code >= 500:
            raise TollgateUnavailable(f"{resp.status_code}: {resp.text[:200]}")
        if resp.status_code >= 400:
            raise ValueError(f"{resp.status_code}: {resp.text[:500]}")
        return resp

    async def consume(
        self,
        organization_id: str,
        items: list[tuple[str, int]],
        *,
        project: str | None = None,
        idempotency_key: str | None = None,
        allow_partial: bool = False,
    ) -> ConsumeResult:
        body: dict[str, Any] = {
            "organization_id": organization_id,
            "items": [{"category": c, "quantity": q} for c, q in items],
            "allow_partial": allow_partial,
        }
        if project:
            body["project"] = project
        if idempotency_key:
            body["idempotency_key"] = idempotency_key
        resp = await self._post("/v1/quotas/consume", body)
        data = resp.json()
        retry = resp.headers.get("retry-after")
        return ConsumeResult(
            data["accepted"],
            data["items"],
            data["period_start"],
            data.get("degraded", False),
            resp.headers.get("x-sentry-rate-limits"),
            int(retry) if retry else None,
        )

    async def refund(
        self,
        organization_id: str,
        items: list[tuple[str, int]],
        *,
        period_start: int | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, int]:
        body: dict[str, Any] = {
            "organization_id": organization_id,
            "items": [{"category": c, "quantity": q} for c, q in items],
        }
        if period_start is not None:
            body["period_start"] = period_start
        if idempotency_key:
            body["idempotency_key"] = idempotency_key
        return (await self._post("/v1/quotas/refund", body)).json()["refunded"]  # type: ignore[no-any-return]

    async def lease(self, organization_id: str, category: str, quantity: int) -> Lease:
        data = (
            await self._post(
                "/v1/quotas/lease",
                {
                    "organization_id": organization_id,
                    "category": category,
                    "quantity": quantity,
                },
            )
        ).json()
        lease = Lease(
            organization_id, category, data["lease_id"], data["granted"], data["granted"], data["remaining"]
        )
        if not data["granted"]:
            lease.denied_until = time.monotonic() + (data.get("retry_after") or 1)
        return lease

    async def return_lease(self, lease: Lease, unused: int) -> None:
        if lease.lease_id is None:
            return
        await self._post(
            f"/v1/quotas/lease/{lease.lease_id}/return",
            {"organization_id": lease.organization_id, "unused": unused},
        )


@dataclass
class LeasingMeter:
    """Local decisions from leased blocks (see the module docstring)."""

    client: TollgateClient
    block: int = 1000
    """Block to lease at first."""
    max_block: int = 0
    """Largest block (0 = 16 x ``block``): a lease spent within ``fast_refill`` seconds doubles
    the next block, one that lasted 10 x longer halves it again, so a busy org costs a
    round trip every ~second rather than every ``block`` events."""
    fast_refill: float = 1.0
    expected_clients: int = 4
    """How many ingest processes share an org: near the limit each leases at most
    ``remaining / expected_clients`` so the tail is spread instead of hoarded."""
    when_unavailable: Literal["deny", "allow"] = "deny"
    """What to answer once the held leases are spent and Tollgate cannot be reached."""
    _leases: dict[tuple[str, str], Lease] = field(default_factory=dict)
    _spent: list[Lease] = field(default_factory=list)
    _locks: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict)
    _sizes: dict[tuple[str, str], int] = field(default_factory=dict)
    accepted: int = 0
    degraded: bool = False

    def try_local(self, organization_id: str, category: str, quantity: int = 1) -> bool | None:
        """The fast path: ``True``/``False`` decided from what is held, ``None`` = must ask."""
        lease = self._leases.get((organization_id, category))
        if lease is None:
            return None
        if lease.left >= quantity:
            lease.left -= quantity
            self.accepted += quantity
            return True
        if lease.granted == 0 and time.monotonic() < lease.denied_until:
            return False
        return None

    async def consume(self, organization_id: str, category: str, quantity: int = 1) -> bool:
        local = self.try_local(organization_id, category, quantity)
        if local is not None:
            return local
        key = (organization_id, category)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            local = self.try_local(organization_id, category, quantity)
            if local is not None:
                return local
            await self._refill(key, quantity)
            local = self.try_local(organization_id, category, quantity)
        if local is None:  # Tollgate unreachable and nothing held
            return self.when_unavailable == "allow"
        return local

    def _next_block(self, key: tuple[str, str], previous: Lease | None, quantity: int) -> int:
        size = self._sizes.get(key, self.block)
        if previous is not None and previous.granted:
            lasted = time.monotonic() - previous.taken_at
            if lasted < self.fast_refill:
                size = min(size * 2, self.max_block or 16 * self.block)
            elif lasted > 10 * self.fast_refill:
                size = max(self.block, size // 2)
        self._sizes[key] = size
        if previous is not None and previous.remaining is not None:
            # near the limit: at most a share of what is left, so the tail is spread, not hoarded
            size = min(size, max(1, previous.remaining // max(1, self.expected_clients)))
        return max(size, quantity)

    async def _refill(self, key: tuple[str, str], quantity: int) -> None:
        previous = self._leases.get(key)
        size = self._next_block(key, previous, quantity)
        try:
            if previous is not None and previous.lease_id is not None and previous.left == 0:
                # spent: returning it only clears its record, so do that alongside the new lease
                _, lease = await asyncio.gather(
                    self._forget(previous), self.client.lease(key[0], key[1], size)
                )
            else:
                if previous is not None and previous.lease_id is not None:
                    await self.client.return_lease(previous, previous.left)
                    previous.left = 0
                lease = await self.client.lease(key[0], key[1], size)
            self.degraded = False
        except TollgateUnavailable:
            self.degraded = True
            if previous is not None:
                self._leases[key] = previous  # keep spending nothing more than what is held
            return
        if previous is not None:
            self._spent.append(previous)
        self._leases[key] = lease

    async def _forget(self, lease: Lease) -> None:
        with contextlib.suppress(TollgateUnavailable):  # a record left behind ends with its period
            await self.client.return_lease(lease, 0)

    async def close(self) -> None:
        """Return every unused unit (call on shutdown)."""
        for lease in self._leases.values():
            if lease.left and lease.lease_id:
                try:
                    await self.client.return_lease(lease, lease.left)
                    lease.left = 0
                except TollgateUnavailable:
                    pass
        self._leases.clear()
