"""Outbound notifications: endpoints, once-only events, and signed deliveries with retries.

How an event travels:

1. **Detect.** Usage events (``usage.threshold``, ``usage.on_demand_exhausted``,
   ``usage.spike_protection``) are found by :func:`usage_flushed`, called by the usage flush loop
   right after it has copied the touched orgs' counters to the database: the meter's hot path only
   marks the org as touched and never waits for any of this. Billing, plan and marketplace events
   come from the audit trail those domains already write (:class:`AuditWatch`, a cron job with a
   cursor), and the grace-period warning from the billing accounts (:class:`GraceWatch`).
2. **Record once.** Each event carries a ``dedupe_key`` (org, category, period and threshold; or the
   audit event id); ``INSERT ... ON CONFLICT DO NOTHING`` on it is the once-only guard: it holds
   across concurrent flushes, replicas and restarts. The event and one delivery row per matching
   endpoint are committed together (an outbox).
3. **Deliver.** After the commit a job per delivery is queued; a failed attempt is rescheduled with
   exponential backoff; a sweep re-queues deliveries whose job was lost. An endpoint failing
   continuously for ``notifications.disable_after`` seconds is disabled.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import secrets
import socket
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import httpx
import structlog
from sqlalchemy.ext.asyncio import AsyncSession
from standardwebhooks.webhooks import Webhook

from app.auth.principal import Principal
from app.billing.repositories import BillingAccountRepository
from app.context import AppContext
from app.db.models import NotificationDelivery, NotificationEvent, WebhookEndpoint
from app.errors import Forbidden
from app.marketplace.credentials import TokenVault, load_secrets
from app.metering.usage import read_usage
from app.notifications import schemas
from app.notifications.errors import (
    EndpointAddressNotAllowed,
    InvalidEndpointUrl,
    UnknownEventType,
)
from app.notifications.repositories import (
    DeliveryRepository,
    NotificationEventRepository,
    UsageDailyRepository,
    WebhookEndpointRepository,
)
from app.orgs.repositories import OrganizationRepository
from app.plans.periods import as_utc
from app.settings import NotificationSettings, Settings

log = structlog.get_logger(__name__)

DELIVER_JOB = "deliver_notification"
EVENT_TYPES: tuple[str, ...] = (
    "usage.threshold",
    "usage.on_demand_exhausted",
    "usage.spike_protection",
    "plan.changed",
    "billing.payment_failed",
    "billing.grace_ending",
    "billing.downgraded",
    "billing.suspended",
    "marketplace.provisioned",
    "marketplace.deprovisioned",
)
AUDIT_KINDS = ("plan.changed", "status.changed", "organization.created")
AUDIT_OVERLAP_MS = 120_000
"""The audit scan re-reads this far behind its cursor: a row stamped earlier that committed later
is still seen (the dedupe key makes re-reading harmless)."""
AUDIT_FIRST_LOOKBACK_MS = 3_600_000


# ---------------------------------------------------------------------------- secrets, urls
def new_signing_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


async def _vault(settings: Settings) -> TokenVault:
    """Endpoint secrets are encrypted with the same Fernet key as the marketplace's stored tokens."""
    found = await asyncio.to_thread(load_secrets, settings)
    return TokenVault(found.token_key)


def private_allowed(settings: Settings) -> bool:
    configured = settings.notifications.allow_private_urls
    return configured if configured is not None else settings.env != "production"


def _is_private(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return not ip.is_global or ip.is_multicast


def check_url(url: str, settings: Settings) -> str:
    """An absolute http(s) URL; a literal private address or ``localhost`` only when allowed."""
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError as exc:
        raise InvalidEndpointUrl from exc
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        raise InvalidEndpointUrl
    if not private_allowed(settings):
        host = parts.hostname
        if host == "localhost" or host.endswith(".localhost"):
            raise EndpointAddressNotAllowed
        try:
            if _is_private(host):
                raise EndpointAddressNotAllowed
        except ValueError:
            pass  # a name: resolved and checked again at every delivery
    return url


async def _resolves_private(url: str) -> bool:
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return any(_is_private(str(info[4][0])) for info in infos)


# ---------------------------------------------------------------------------- endpoints
class EndpointService:
    """Register, list, rotate and delete webhook endpoints; read their delivery log."""

    def __init__(self, session: AsyncSession, ctx: AppContext) -> None:
        self.session = session
        self.ctx = ctx
        self.repo = WebhookEndpointRepository(session=session)

    async def create(
        self, data: schemas.WebhookEndpointCreate, principal: Principal
    ) -> schemas.WebhookEndpointCreated:
        org_id = data.organization_id
        if principal.scope == "org":
            if org_id is not None and org_id != principal.organization_id:
                raise Forbidden("An organization key registers endpoints for its own organization only.")
            org_id = principal.organization_id
        elif org_id is not None:
            await OrganizationRepository(session=self.session).get_for(principal, org_id)
        events = sorted(set(data.events or []))
        unknown = [e for e in events if e not in EVENT_TYPES]
        if unknown:
            raise UnknownEventType(f"Unknown event types {unknown}; known: {list(EVENT_TYPES)}")
        url = check_url(data.url, self.ctx.settings)
        secret = new_signing_secret()
        vault = await _vault(self.ctx.settings)
        endpoint = WebhookEndpoint(
            organization_id=org_id,
            url=url,
            events=events,
            description=data.description,
            secret_encrypted=vault.encrypt(secret),
            secret_prefix=secret[:12],
        )
        await self.repo.add(endpoint)
        await self.session.commit()
        return schemas.WebhookEndpointCreated(
            id=endpoint.id,
            url=endpoint.url,
            events=list(endpoint.events),
            organization_id=endpoint.organization_id,
            description=endpoint.description,
            secret_prefix=endpoint.secret_prefix,
            enabled=True,
            created_at=endpoint.created_at,
            secret=secret,
        )

    async def page(self, principal: Principal, limit: int, offset: int) -> schemas.WebhookEndpointPage:
        items, total = await self.repo.page_for(principal, limit, offset)
        return schemas.WebhookEndpointPage(items=[to_schema(e) for e in items], total=total)

    async def get(self, principal: Principal, endpoint_id: UUID) -> schemas.WebhookEndpoint:
        return to_schema(await self.repo.get_for(principal, endpoint_id))

    async def rotate(self, principal: Principal, endpoint_id: UUID) -> schemas.SecretRotated:
        endpoint = await self.repo.get_for(principal, endpoint_id)
        secret = new_signing_secret()
        endpoint.secret_encrypted = (await _vault(self.ctx.settings)).encrypt(secret)
        endpoint.secret_prefix = secret[:12]
        await self.session.commit()
        return schemas.SecretRotated(id=endpoint.id, secret_prefix=endpoint.secret_prefix, secret=secret)

    async def enable(self, principal: Principal, endpoint_id: UUID) -> schemas.WebhookEndpoint:
        """Re-enable an endpoint that was disabled after failing (its failure streak restarts)."""
        endpoint = await self.repo.get_for(principal, endpoint_id)
        endpoint.disabled_at = None
        endpoint.disabled_reason = None
        endpoint.failing_since = None
        await self.session.commit()
        return to_schema(endpoint)

    async def delete(self, principal: Principal, endpoint_id: UUID) -> None:
        endpoint = await self.repo.get_for(principal, endpoint_id)
        await self.repo.delete(endpoint.id)
        await self.session.commit()

    async def deliveries(
        self, principal: Principal, endpoint_id: UUID, limit: int, offset: int
    ) -> schemas.DeliveryPage:
        endpoint = await self.repo.get_for(principal, endpoint_id)
        rows, total = await DeliveryRepository(session=self.session).page_for_endpoint(
            endpoint.id, limit, offset
        )
        return schemas.DeliveryPage(
            items=[
                schemas.Delivery(
                    id=d.id,
                    event_id=e.id,
                    webhook_id=webhook_id(e.id),
                    type=e.type,
                    organization_id=e.organization_id,
                    status=d.status,
                    attempts=d.attempts,
                    next_attempt_at=d.next_attempt_at if d.status == "pending" else None,
                    last_attempt_at=d.last_attempt_at,
                    last_status_code=d.last_status_code,
                    last_error=d.last_error,
                    delivered_at=d.delivered_at,
                    created_at=d.created_at,
                )
                for d, e in rows
            ],
            total=total,
        )


def to_schema(e: WebhookEndpoint) -> schemas.WebhookEndpoint:
    return schemas.WebhookEndpoint(
        id=e.id,
        url=e.url,
        events=list(e.events or []),
        organization_id=e.organization_id,
        description=e.description,
        secret_prefix=e.secret_prefix,
        enabled=e.disabled_at is None,
        disabled_at=e.disabled_at,
        disabled_reason=e.disabled_reason,
        failing_since=e.failing_since,
        created_at=e.created_at,
    )


def webhook_id(event_id: UUID) -> str:
    return f"msg_{event_id.hex}"


# ---------------------------------------------------------------------------- emitting
class Candidate:
    """An event that may be new: its once-only key, type, org and data."""

    __slots__ = ("data", "dedupe_key", "organization_id", "type")

    def __init__(self, dedupe_key: str, type_: str, organization_id: UUID | None, data: dict[str, Any]):
        self.dedupe_key = dedupe_key
        self.type = type_
        self.organization_id = organization_id
        self.data = data


def _listeners(
    endpoints: Iterable[WebhookEndpoint], org_id: UUID | None, type_: str
) -> list[WebhookEndpoint]:
    return [
        e
        for e in endpoints
        if (e.organization_id is None or e.organization_id == org_id) and (not e.events or type_ in e.events)
    ]


class Notifier:
    """Records events once and queues their deliveries after the commit."""

    def __init__(self, session: AsyncSession, ctx: AppContext) -> None:
        self.session = session
        self.ctx = ctx
        self.events = NotificationEventRepository(session=session)
        self.endpoints = WebhookEndpointRepository(session=session)

    async def emit_many(
        self, candidates: Sequence[Candidate], endpoints: list[WebhookEndpoint] | None = None
    ) -> list[UUID]:
        """Record each candidate that some endpoint listens to and that was never recorded;
        commit; queue the deliveries. Returns the ids of the events that were new."""
        if endpoints is None:
            endpoints = await self.endpoints.enabled()
        wanted = [c for c in candidates if _listeners(endpoints, c.organization_id, c.type)]
        if not wanted:
            return []
        known = await self.events.existing_keys([c.dedupe_key for c in wanted])
        now = self.ctx.clock.now()
        new_events: list[UUID] = []
        deliveries: list[UUID] = []
        for c in wanted:
            if c.dedupe_key in known:
                continue
            event_id = uuid.uuid4()
            payload = {"type": c.type, "timestamp": now.isoformat(), "data": c.data}
            row = {
                "id": event_id,
                "organization_id": c.organization_id,
                "type": c.type,
                "dedupe_key": c.dedupe_key,
                "payload": payload,
                "created_at": now,
                "updated_at": now,
            }
            if not await self.events.insert_once(row):
                continue  # another flush, replica or restart recorded it first
            new_events.append(event_id)
            for endpoint in _listeners(endpoints, c.organization_id, c.type):
                delivery = NotificationDelivery(
                    event_id=event_id,
                    endpoint_id=endpoint.id,
                    status="pending",
                    attempts=0,
                    next_attempt_at=now,
                )
                self.session.add(delivery)
                await self.session.flush()
                deliveries.append(delivery.id)
        await self.session.commit()
        for delivery_id in deliveries:
            await enqueue_delivery(self.ctx, delivery_id, 0)
        if new_events:
            log.info("notifications.emitted", events=len(new_events), deliveries=len(deliveries))
        return new_events


async def enqueue_delivery(
    ctx: AppContext, delivery_id: UUID, attempts: int, at: datetime | None = None
) -> bool:
    """Queue an attempt (deduplicated by job key). A failure is logged, not raised: the delivery
    row is stored and the sweep queues it again."""
    if ctx.queue is None:
        return False
    kwargs: dict[str, Any] = {}
    if at is not None:
        kwargs["scheduled"] = int(at.timestamp())
    try:
        await ctx.queue.enqueue(
            DELIVER_JOB,
            key=f"notify:{delivery_id}:{attempts}",
            timeout=int(ctx.settings.notifications.timeout) + 30,
            delivery_id=str(delivery_id),
            **kwargs,
        )
    except Exception as exc:  # the queue's Redis may be down or closing; the sweep retries
        log.warning("notifications.enqueue_failed", delivery_id=str(delivery_id), error=type(exc).__name__)
        return False
    return True


# ---------------------------------------------------------------------------- detectors
async def usage_flushed(ctx: AppContext, organization_ids: set[str]) -> None:
    """Called by the flush loop after each flush: daily snapshots and usage notifications for the
    orgs whose counters changed. Never raises (the flush loop must keep running)."""
    if not organization_ids:
        return
    try:
        await UsageWatch(ctx).run(organization_ids)
    except Exception as exc:
        log.warning("notifications.usage_watch_failed", error=type(exc).__name__, orgs=len(organization_ids))


class UsageWatch:
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    async def run(self, organization_ids: set[str]) -> int:
        now = self.ctx.clock.now()
        day = now.date()
        settings = self.ctx.settings.notifications
        snapshots: list[dict[str, Any]] = []
        candidates: list[Candidate] = []
        for org in sorted(organization_ids):
            try:
                org_id = UUID(org)
            except ValueError:
                continue
            usage = await read_usage(self.ctx.meter, org)
            period_start = datetime.fromtimestamp(usage.period_start, UTC)
            period = {
                "start": period_start.isoformat(),
                "end": datetime.fromtimestamp(usage.period_end, UTC).isoformat(),
            }
            for c in usage.categories:
                snapshots.append(
                    {
                        "organization_id": org_id,
                        "category": c.category,
                        "period_start": period_start,
                        "day": day,
                        "used": c.used,
                        "on_demand_used": c.on_demand_used,
                    }
                )
                candidates += _usage_candidates(org_id, usage.period_start, period, c, settings)
            spent, budget = usage.on_demand_spent_cents, usage.on_demand_budget_cents
            exhausted = any(c.refused.get("on_demand_exhausted", 0) > 0 for c in usage.categories)
            if exhausted or (budget > 0 and spent >= budget):
                candidates.append(
                    Candidate(
                        f"on_demand:{org_id}:{usage.period_start}",
                        "usage.on_demand_exhausted",
                        org_id,
                        {
                            "organization_id": str(org_id),
                            "budget_cents": budget,
                            "spent_cents": spent,
                            "period": period,
                        },
                    )
                )
        async with self.ctx.sessions() as session:
            if snapshots:
                await UsageDailyRepository(session=session).record(snapshots, now)
                await session.commit()
            new = await Notifier(session, self.ctx).emit_many(candidates) if candidates else []
        return len(new)


def _usage_candidates(
    org_id: UUID, period_start: int, period: dict[str, str], c: Any, settings: NotificationSettings
) -> list[Candidate]:
    out: list[Candidate] = []
    base = {"organization_id": str(org_id), "category": c.category, "period": period}
    if c.limit is not None and c.limit > 0:
        allowance_used = c.used - c.on_demand_used
        for threshold in sorted(set(settings.thresholds)):
            crossed = allowance_used * 100 >= threshold * c.limit or (
                threshold >= 100 and c.refused.get("usage_exceeded", 0) > 0
            )
            if crossed:
                out.append(
                    Candidate(
                        f"threshold:{org_id}:{c.category}:{period_start}:{threshold}",
                        "usage.threshold",
                        org_id,
                        {**base, "threshold": threshold, "used": allowance_used, "limit": c.limit},
                    )
                )
    spikes = c.refused.get("spike_protection", 0)
    if spikes > 0:
        out.append(
            Candidate(
                f"spike:{org_id}:{c.category}:{period_start}",
                "usage.spike_protection",
                org_id,
                {**base, "refused": spikes},
            )
        )
    return out


class AuditWatch:
    """Turns new audit-trail rows (plan, status, marketplace changes) into notifications."""

    def __init__(self, session: AsyncSession, ctx: AppContext) -> None:
        self.session = session
        self.ctx = ctx

    def _cursor_key(self) -> str:
        return f"tollgate:{self.ctx.settings.worker.queue}:notifications:audit-cursor"

    async def run(self, batch: int = 500) -> int:
        # Audit rows are stamped with the wall clock when written, so the cursor is wall time too.
        now_ms = int(datetime.now(UTC).timestamp() * 1000)
        raw = await self.ctx.redis.get(self._cursor_key())
        cursor = int(raw) if raw else now_ms - AUDIT_FIRST_LOOKBACK_MS
        endpoints = await WebhookEndpointRepository(session=self.session).enabled()
        if not endpoints:
            await self.session.commit()
            await self.ctx.redis.set(self._cursor_key(), str(now_ms))
            return 0
        since = datetime.fromtimestamp((cursor - AUDIT_OVERLAP_MS) / 1000, UTC)
        rows = await NotificationEventRepository(session=self.session).audit_since(since, AUDIT_KINDS, batch)
        await self.session.commit()
        candidates = [
            c
            for c in (_audit_candidate(r.id, r.organization_id, r.kind, r.actor, r.detail) for r in rows)
            if c is not None
        ]
        new = await Notifier(self.session, self.ctx).emit_many(candidates, endpoints)
        if len(rows) < batch:
            next_cursor = now_ms
        else:  # a full page: resume from its last row (the overlap re-reads a little, harmlessly)
            next_cursor = int(as_utc(rows[-1].created_at).timestamp() * 1000) + AUDIT_OVERLAP_MS
        await self.ctx.redis.set(self._cursor_key(), str(next_cursor))
        return len(new)


def _audit_candidate(
    audit_id: UUID, org_id: UUID, kind: str, actor: str, detail: dict[str, Any]
) -> Candidate | None:
    data: dict[str, Any] = {"organization_id": str(org_id), "actor": actor}
    if kind == "plan.changed":
        data |= {"from": detail.get("from"), "to": detail.get("to")}
        type_ = "billing.downgraded" if actor == "stripe:dunning" else "plan.changed"
    elif kind == "status.changed":
        data |= {"from": detail.get("from"), "to": detail.get("to")}
        target = detail.get("to")
        if target == "past_due":
            type_ = "billing.payment_failed"
        elif target == "suspended":
            type_ = "billing.suspended"
        elif target == "deprovisioned":
            type_ = "marketplace.deprovisioned"
        else:
            return None
    elif kind == "organization.created" and actor.startswith("marketplace:"):
        data |= {"plan": detail.get("plan"), "provider": actor.split(":", 1)[1]}
        type_ = "marketplace.provisioned"
    else:
        return None
    return Candidate(f"audit:{audit_id}", type_, org_id, data)


class GraceWatch:
    """``billing.grace_ending``: once per past-due episode, ``grace_warning_hours`` before its end."""

    def __init__(self, session: AsyncSession, ctx: AppContext) -> None:
        self.session = session
        self.ctx = ctx

    async def run(self) -> int:
        now = self.ctx.clock.now()
        grace = timedelta(days=self.ctx.settings.stripe.grace_days)
        warn = timedelta(hours=self.ctx.settings.notifications.grace_warning_hours)
        candidates = []
        for account in await BillingAccountRepository(session=self.session).in_grace():
            if account.past_due_since is None:
                continue
            ends = as_utc(account.past_due_since) + grace
            if ends - warn <= now < ends:
                since = int(as_utc(account.past_due_since).timestamp())
                candidates.append(
                    Candidate(
                        f"grace_ending:{account.organization_id}:{since}",
                        "billing.grace_ending",
                        account.organization_id,
                        {"organization_id": str(account.organization_id), "grace_ends_at": ends.isoformat()},
                    )
                )
        await self.session.commit()
        return len(await Notifier(self.session, self.ctx).emit_many(candidates)) if candidates else 0


# ---------------------------------------------------------------------------- delivering
class Deliverer:
    """One attempt of one delivery: claim it, sign, POST, record the outcome, reschedule."""

    def __init__(self, session: AsyncSession, ctx: AppContext) -> None:
        self.session = session
        self.ctx = ctx
        self.settings = ctx.settings.notifications
        self.deliveries = DeliveryRepository(session=session)

    def backoff(self, attempts: int) -> float:
        return float(
            min(self.settings.retry_delay * 2 ** max(attempts - 1, 0), self.settings.max_retry_delay)
        )

    async def attempt(self, delivery_id: UUID) -> str:
        delivery = await self.deliveries.get_one_or_none(id=delivery_id)
        if delivery is None or delivery.status != "pending":
            await self.session.rollback()
            return "nothing to do"
        now = self.ctx.clock.now()
        lease = now + timedelta(seconds=self.settings.timeout + 60)
        attempts = delivery.attempts
        if not await self.deliveries.claim(delivery_id, attempts, now, lease):
            await self.session.rollback()
            return "taken by another worker"
        await self.session.commit()
        await self.session.refresh(delivery)
        endpoint = await self.session.get(WebhookEndpoint, delivery.endpoint_id)
        event = await self.session.get(NotificationEvent, delivery.event_id)
        if endpoint is None or event is None or endpoint.disabled_at is not None:
            delivery.status, delivery.next_attempt_at = "failed", None
            delivery.last_error = "endpoint disabled" if endpoint is not None else "endpoint deleted"
            await self.session.commit()
            return delivery.last_error
        url, encrypted = endpoint.url, endpoint.secret_encrypted
        await self.session.commit()  # no transaction is held across the HTTP call
        status, error = await self._post(url, encrypted, webhook_id(event.id), event.payload)
        return await self._record(delivery, endpoint, attempts + 1, status, error)

    async def _post(
        self, url: str, encrypted_secret: str, msg_id: str, payload: dict[str, Any]
    ) -> tuple[int | None, str | None]:
        try:
            if not private_allowed(self.ctx.settings) and await _resolves_private(url):
                return None, "address not allowed (private, loopback or link-local)"
        except OSError:
            return None, "the endpoint's host does not resolve"
        secret = (await _vault(self.ctx.settings)).decrypt(encrypted_secret)
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True)
        when = datetime.fromtimestamp(int(self.ctx.clock.time()), UTC)
        headers = {
            "content-type": "application/json",
            "user-agent": "Tollgate-Webhooks/1",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(when.timestamp())),
            "webhook-signature": Webhook(secret).sign(msg_id, when, body),
        }
        try:
            async with httpx.AsyncClient(
                timeout=self.settings.timeout, follow_redirects=False, trust_env=False
            ) as client:
                resp = await client.post(url, content=body.encode(), headers=headers)
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: the endpoint could not be reached"
        if 200 <= resp.status_code < 300:
            return resp.status_code, None
        return resp.status_code, f"the endpoint answered {resp.status_code}"

    async def _record(
        self,
        delivery: NotificationDelivery,
        endpoint: WebhookEndpoint,
        attempts: int,
        status: int | None,
        error: str | None,
    ) -> str:
        now = self.ctx.clock.now()
        delivery.last_status_code = status
        delivery.last_error = error
        if error is None:
            delivery.status, delivery.delivered_at, delivery.next_attempt_at = "succeeded", now, None
            endpoint.failing_since = None
            await self.session.commit()
            return "delivered"
        if endpoint.failing_since is None:
            endpoint.failing_since = now
        failing_for = (now - as_utc(endpoint.failing_since)).total_seconds()
        if failing_for >= self.settings.disable_after:
            endpoint.disabled_at = now
            endpoint.disabled_reason = f"failed continuously for {int(failing_for)} s"
            delivery.status, delivery.next_attempt_at = "failed", None
            await self.deliveries.fail_pending(endpoint.id, "endpoint disabled after failing", now)
            await self.session.commit()
            log.warning("notifications.endpoint_disabled", endpoint_id=str(endpoint.id))
            return "failed; endpoint disabled"
        if attempts >= self.settings.max_attempts:
            delivery.status, delivery.next_attempt_at = "failed", None
            await self.session.commit()
            return "failed; no attempts left"
        retry_at = now + timedelta(seconds=self.backoff(attempts))
        delivery.next_attempt_at = retry_at
        delivery_id = delivery.id
        await self.session.commit()
        await enqueue_delivery(self.ctx, delivery_id, attempts, retry_at)
        return f"retry at {retry_at.isoformat()}"


async def sweep_deliveries(session: AsyncSession, ctx: AppContext) -> int:
    """Queue pending deliveries whose attempt is due (a lost enqueue, a restart, a dead worker)."""
    due = await DeliveryRepository(session=session).due(ctx.clock.now())
    pending = [(d.id, d.attempts) for d in due]
    await session.commit()
    for delivery_id, attempts in pending:
        await enqueue_delivery(ctx, delivery_id, attempts)
    return len(pending)
