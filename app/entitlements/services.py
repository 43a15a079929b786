"""Entitlements, seats and trials.

Effective entitlements are :func:`app.metering.config.org_limits`: plan version + overrides + a
running trial, through the one pure ``effective_limits`` function that also yields the quotas, so
features, limits and quotas can never disagree. They reach Redis inside the org's QuotaConfig
(``f``, ``mem``, ``ret``), which the control plane re-publishes after every change; feature checks
and seat counts read it there, never the database.

A trial is an overlay, not a plan change: the org keeps its plan and the trial columns say which
plan it tries until when. At the end nothing has to be restored, and a plan change during the trial
(Checkout, the control plane) voids it at once. The trials job records ends and re-publishes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import msgspec
import structlog
from redis.exceptions import RedisError
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from app.auth.principal import Principal
from app.context import AppContext
from app.db.models import AuditEvent, Organization
from app.db.models import Trial as TrialRow
from app.entitlements import schemas
from app.entitlements.errors import (
    SeatLimitReached,
    SeatsUnavailable,
    TrialAlreadyUsed,
    TrialInProgress,
    TrialNotAvailable,
    TrialTooLong,
    UnknownFeature,
)
from app.entitlements.repositories import SeatRepository, TrialRepository, TrialStateRepository
from app.entitlements.store import (
    ConfigReader,
    SeatAnswer,
    SeatStore,
    pin_config_expiry,
    read_features,
)
from app.metering.config import active_trial, org_limits, plan_key_parts
from app.metering.errors import MeterUnavailable
from app.orgs.errors import OrganizationNotFound, UnknownPlan
from app.orgs.repositories import OrganizationRepository
from app.orgs.services import sync_meter
from app.plans import FEATURES, Catalog, EffectiveLimits, Overrides, PlanVersion
from app.plans.limits import OverridesError
from app.plans.periods import as_utc

log = structlog.get_logger(__name__)

TRIALS_ACTOR = "system:trials"
BILLING_ACTOR = "system:billing"
_FEATURES = frozenset(FEATURES)


# ---------------------------------------------------------------------------- pure helpers
def plan_price(catalog: Catalog, name: str, version: int | None = None) -> float:
    """Monthly price used to order plans; per-contract plans rank above every priced one."""
    if name not in catalog:
        return 0.0
    cents = catalog.get(name, version).monthly_price_cents
    return float("inf") if cents is None else float(cents)


def upgrade_to(
    catalog: Catalog, plan: str, version: int | None, wants: Callable[[PlanVersion], bool]
) -> str | None:
    """The cheapest current self-serve plan priced above ``plan`` for which ``wants`` holds: what
    an upgrade prompt should offer. ``None`` when no self-serve plan would do (talk to sales)."""
    floor = plan_price(catalog, plan, version)
    for candidate in catalog.self_serve_by_price():
        if (candidate.monthly_price_cents or 0) > floor and wants(candidate):
            return candidate.name
    return None


def feature_upgrade(catalog: Catalog, plan: str, version: int | None, feature: str) -> str | None:
    return upgrade_to(catalog, plan, version, lambda p: feature in p.features)


def seats_upgrade(catalog: Catalog, plan: str, version: int | None, needed: int) -> str | None:
    return upgrade_to(catalog, plan, version, lambda p: p.members is None or p.members >= needed)


def entitlement_changes(before: EffectiveLimits, after: EffectiveLimits) -> dict[str, Any]:
    """What changed between two effective entitlements (for the audit trail)."""
    out: dict[str, Any] = {}
    if (before.plan, before.version) != (after.plan, after.version):
        out["plan"] = {"from": f"{before.plan}@v{before.version}", "to": f"{after.plan}@v{after.version}"}
    if gained := sorted(after.features - before.features):
        out["features_added"] = gained
    if lost := sorted(before.features - after.features):
        out["features_removed"] = lost
    if before.members != after.members:
        out["members"] = {"from": before.members, "to": after.members}
    if before.retention_days != after.retention_days:
        out["retention_days"] = {"from": before.retention_days, "to": after.retention_days}
    quotas = {
        c: {"from": before.quotas.get(c), "to": q}
        for c, q in after.quotas.items()
        if before.quotas.get(c) != q
    }
    if quotas:
        out["quotas"] = quotas
    return out


def _pinned_by_overrides(org: Organization) -> frozenset[str]:
    """Features revoked and limits fixed by the org's overrides: no plan upgrade changes them, so
    no upgrade is offered for them (the check, served from Redis alone, cannot see this)."""
    try:
        ov = Overrides.from_dict(org.overrides)
    except OverridesError:
        return frozenset()
    pinned = {name for name, enabled in ov.features.items() if not enabled}
    if ov.members_set:
        pinned.add("members")
    return frozenset(pinned)


def _plan_key(org: Organization) -> str:
    return f"{org.plan}@v{org.plan_version}"


def _set_trial_columns(
    org: Organization, plan: str | None, ends_at: datetime | None, previous: str | None
) -> None:
    """Mirror a compare-and-set UPDATE on the loaded row without marking it dirty."""
    set_committed_value(org, "trial_plan", plan)
    set_committed_value(org, "trial_ends_at", ends_at)
    set_committed_value(org, "trial_previous_plan", previous)


def _audit(session: AsyncSession, org: Organization, kind: str, actor: str, detail: dict[str, Any]) -> None:
    session.add(AuditEvent(organization_id=org.id, kind=kind, actor=actor, detail=detail))


# ---------------------------------------------------------------------------- reads
class EntitlementService:
    """The full entitlements read of one organization (control plane, product backend)."""

    def __init__(self, session: AsyncSession, ctx: AppContext) -> None:
        self.session = session
        self.ctx = ctx
        self.repo = OrganizationRepository(session=session)

    async def get(self, principal: Principal, organization_id: UUID) -> Organization:
        return await self.repo.get_for(principal, organization_id)

    async def read(self, org: Organization) -> tuple[schemas.Entitlements, str]:
        """The entitlements now and their ETag (a hash of the body: equal bodies, equal tags)."""
        catalog, now = self.ctx.catalog, self.ctx.clock.now()
        limits = org_limits(org, catalog, now)
        trial_plan = active_trial(org, catalog, now)
        used = await SeatService(self.session, self.ctx).used(org)
        plan, version = limits.plan, limits.version
        pinned = _pinned_by_overrides(org)
        features = {
            name: schemas.FeatureState(
                enabled=name in limits.features,
                upgrade_to=None
                if name in limits.features or name in pinned
                else feature_upgrade(catalog, plan, version, name),
            )
            for name in FEATURES
        }
        over = limits.members is not None and used > limits.members
        full = limits.members is not None and used >= limits.members
        members = schemas.MembersLimit(
            value=limits.members,
            unit="members",
            used=used,
            over_limit=over,
            upgrade_to=seats_upgrade(catalog, plan, version, used + 1)
            if full and "members" not in pinned
            else None,
        )
        notices = []
        if over:
            notices.append(
                f"{used} members exceed the plan's limit of {limits.members}: existing members keep "
                "their access, new members are refused until enough leave or the organization "
                "upgrades."
            )
        trial = None
        if trial_plan is not None and org.trial_ends_at is not None:
            row = await TrialRepository(session=self.session).running(org.id)
            trial = schemas.TrialState(
                plan=trial_plan.name,
                version=trial_plan.version,
                started_at=row.started_at if row is not None else None,
                ends_at=as_utc(org.trial_ends_at),
                returns_to=org.plan,
            )
        body = schemas.Entitlements(
            organization_id=org.id,
            plan=plan,
            version=version,
            status=org.status,
            features=features,
            limits=schemas.Limits(
                members=members, retention_days=schemas.Limit(value=limits.retention_days, unit="days")
            ),
            trial=trial,
            notices=notices,
        )
        etag = hashlib.sha256(msgspec.json.encode(body)).hexdigest()[:32]
        return body, f'"{etag}"'


class FeatureChecker:
    """``may org X use feature Y?`` from Redis only. Upgrade suggestions are computed once per
    (plan, version, feature) from the in-memory catalog."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.reader = ConfigReader(ctx.redis)
        self._upgrades: dict[tuple[str, int, str], str | None] = {}

    async def check(self, principal: Principal, organization_id: UUID, feature: str) -> schemas.CheckResult:
        if feature not in _FEATURES:
            raise UnknownFeature(f"Unknown feature {feature!r}; features: {', '.join(FEATURES)}")
        if principal.scope == "org" and not principal.can_access(organization_id):
            raise OrganizationNotFound
        enabled, status, plan, version = await read_features(
            self.ctx.meter, self.reader, str(organization_id)
        )
        if status == "suspended":
            return schemas.CheckResult(allowed=False, reason="suspended", upgrade_to=None)
        if feature in enabled.split(","):
            return schemas.CheckResult(allowed=True, reason="entitled", upgrade_to=None)
        key = (plan, version, feature)
        if key not in self._upgrades:
            self._upgrades[key] = feature_upgrade(self.ctx.catalog, plan, version or None, feature)
        return schemas.CheckResult(allowed=False, reason="not_entitled", upgrade_to=self._upgrades[key])


# ---------------------------------------------------------------------------- seats
class SeatService:
    """Members joining and leaving, counted exactly in Redis, with a durable copy in ``seat``."""

    def __init__(self, session: AsyncSession, ctx: AppContext) -> None:
        self.session = session
        self.ctx = ctx
        self.repo = SeatRepository(session=session)
        self.store = SeatStore(ctx.redis, ctx.settings.entitlements.seat_idempotency_ttl)

    async def used(self, org: Organization) -> int:
        return (await self._call(org, "count")).used

    async def change(self, org: Organization, data: schemas.SeatChange) -> schemas.SeatResult:
        """Admit or remove one member. A join at the limit is refused (existing members always
        stay); the Redis decision is atomic, so racing joins admit exactly the limit."""
        answer = await self._call(org, data.action, data.member_id, data.idempotency_key)
        if answer.status == "full":
            raise self._full(org, answer)
        if answer.changed and not answer.replayed:
            await self._persist(org, data)
        return schemas.SeatResult(
            organization_id=org.id,
            member_id=data.member_id,
            action=data.action,
            changed=answer.changed,
            used=answer.used,
            limit=answer.limit,
            replayed=answer.replayed,
        )

    async def _persist(self, org: Organization, data: schemas.SeatChange) -> None:
        """Write the durable copy; if that fails, take the Redis change back and say so."""
        try:
            if data.action == "join":
                await self.repo.join(org.id, data.member_id, self.ctx.clock.now())
            else:
                await self.repo.leave(org.id, data.member_id)
            await self.session.commit()
        except SQLAlchemyError as exc:
            await self.session.rollback()
            log.warning("seats.persist_failed", organization_id=str(org.id), error=type(exc).__name__)
            await self.store.call(str(org.id), f"undo_{data.action}", (data.member_id,), data.idempotency_key)
            raise SeatsUnavailable from exc

    async def _call(
        self, org: Organization, op: str, member: str | None = None, idem: str | None = None
    ) -> SeatAnswer:
        org_id = str(org.id)
        members = (member,) if member is not None else ()
        for _attempt in range(3):
            answer = await self.store.call(org_id, op, members, idem)
            if answer.status == "miss":
                await self.ctx.meter.counters(org_id)  # materializes the config (and its limit)
            elif answer.status == "unloaded":
                ids = await self.repo.member_ids(org.id)
                await self.store.call(org_id, "load", tuple(ids))
            else:
                return answer
        raise MeterUnavailable("The organization's seat count could not be loaded.")

    def _full(self, org: Organization, answer: SeatAnswer) -> SeatLimitReached:
        limits = org_limits(org, self.ctx.catalog, self.ctx.clock.now())
        target = (
            None
            if "members" in _pinned_by_overrides(org)
            else seats_upgrade(self.ctx.catalog, limits.plan, limits.version, answer.used + 1)
        )
        offer = f"upgrade_to: {target}" if target else "contact sales for more seats"
        return SeatLimitReached(
            f"Seat limit reached: the {limits.plan} plan allows {answer.limit} members and the "
            f"organization has {answer.used}; existing members keep their seats, a new member needs "
            f"one to be freed or an upgrade ({offer})."
        )


# ---------------------------------------------------------------------------- trials
class TrialService:
    """Card-less, time-boxed trials of a higher self-serve plan."""

    def __init__(self, session: AsyncSession, ctx: AppContext) -> None:
        self.session = session
        self.ctx = ctx
        self.trials = TrialRepository(session=session)
        self.state = TrialStateRepository(session=session)

    async def start(self, org: Organization, data: schemas.TrialStart, actor: str) -> schemas.Trial:
        catalog, settings, now = self.ctx.catalog, self.ctx.settings.entitlements, self.ctx.clock.now()
        if data.plan not in catalog:
            raise UnknownPlan(f"Unknown plan {data.plan!r}; plans: {catalog.names()}")
        target = catalog.current(data.plan)
        days = data.days or settings.trial_days
        if days > settings.trial_max_days:
            raise TrialTooLong(f"A trial lasts at most {settings.trial_max_days} days.")
        self._check_eligible(org, target)
        if org.trial_plan is not None and org.trial_ends_at is not None:
            if active_trial(org, catalog, now) is not None:
                raise TrialInProgress(
                    f"A trial of {org.trial_plan} runs until {as_utc(org.trial_ends_at).isoformat()}."
                )
            await self.end(org, self._outcome(org, now) or "expired", TRIALS_ACTOR)
        if await self.trials.had(org.id, target.name):
            raise TrialAlreadyUsed(f"This organization has already had a trial of the {target.name} plan.")
        before = org_limits(org, catalog, now)
        ends_at, previous = now + timedelta(days=days), _plan_key(org)
        if not await self.state.begin(org.id, target.key, ends_at, previous):
            await self.session.rollback()
            raise TrialInProgress
        self.session.add(
            TrialRow(
                organization_id=org.id,
                plan=target.name,
                plan_version=target.version,
                previous_plan=previous,
                started_at=now,
                ends_at=ends_at,
                actor=actor,
            )
        )
        _set_trial_columns(org, target.key, ends_at, previous)
        detail = {
            "plan": target.key,
            "ends_at": ends_at.isoformat(),
            "returns_to": previous,
            "changes": entitlement_changes(before, org_limits(org, catalog, now)),
        }
        _audit(self.session, org, "trial.started", actor, detail)
        try:
            await self.session.commit()
        except IntegrityError as exc:  # a concurrent start of the same plan won
            await self.session.rollback()
            raise TrialAlreadyUsed from exc
        await self.session.refresh(org)
        await self._publish(org)
        return schemas.Trial(org.id, target.name, target.version, now, ends_at, org.plan)

    def _check_eligible(self, org: Organization, target: PlanVersion) -> None:
        catalog = self.ctx.catalog
        if org.billing_source == "marketplace":
            raise TrialNotAvailable(
                "This organization is billed through a marketplace; its plan changes there, so "
                "trials are not available."
            )
        if org.status != "active":
            raise TrialNotAvailable(f"The organization is {org.status}; trials need an active one.")
        if org.plan in catalog and not catalog.get(org.plan, org.plan_version).self_serve:
            raise TrialNotAvailable(
                f"The organization is on the {org.plan} plan by contract; trials are not available."
            )
        if not target.self_serve:
            raise TrialNotAvailable(f"The {target.name} plan is sold by contract and has no trial.")
        if plan_price(catalog, target.name) <= plan_price(catalog, org.plan, org.plan_version):
            raise TrialNotAvailable(
                f"The {target.name} plan is not above the organization's {org.plan} plan."
            )

    async def end(self, org: Organization, outcome: str, actor: str) -> bool:
        """End ``org``'s trial (idempotent: False if there is none or someone else ended it)."""
        if org.trial_plan is None or org.trial_ends_at is None:
            return False
        catalog, now = self.ctx.catalog, self.ctx.clock.now()
        trial_key, ends_at = org.trial_plan, org.trial_ends_at
        before = org_limits(org, catalog)  # as the columns say (a voided trial already counts 0)
        if not await self.state.clear(org.id, trial_key):
            await self.session.rollback()
            await self.session.refresh(org)
            return False
        row = await self.trials.running(org.id)
        ended_at = as_utc(ends_at) if outcome == "expired" else now
        if row is not None:
            row.ended_at, row.outcome = ended_at, outcome
        _set_trial_columns(org, None, None, None)
        detail = {
            "plan": trial_key,
            "outcome": outcome,
            "ends_at": as_utc(ends_at).isoformat(),
            "ended_at": ended_at.isoformat(),
            "returns_to": _plan_key(org),
            "changes": entitlement_changes(before, org_limits(org, catalog)),
        }
        _audit(self.session, org, "trial.ended", actor, detail)
        await self.session.commit()
        await self.session.refresh(org)
        await self._publish(org)
        return True

    async def sweep(self) -> int:
        """End every trial that is due or voided by a plan change; pin the config of trials about
        to end so the meter drops them on time. Returns how many trials were ended."""
        now = self.ctx.clock.now()
        lookahead = timedelta(seconds=self.ctx.settings.entitlements.trial_expiry_lookahead)
        ended = 0
        for org in await self.state.with_trial():
            try:
                if sa_inspect(org).expired_attributes:  # a rollback below expired the session
                    await self.session.refresh(org)
                outcome = self._outcome(org, now)
                if outcome is not None:
                    ended += await self.end(org, outcome, TRIALS_ACTOR)
                elif org.trial_ends_at is not None and as_utc(org.trial_ends_at) - now <= lookahead:
                    await pin_config_expiry(self.ctx.redis, str(org.id), as_utc(org.trial_ends_at))
            except (SQLAlchemyError, RedisError, OSError) as exc:
                await self.session.rollback()
                log.warning("trials.end_failed", organization_id=str(org.id), error=type(exc).__name__)
        return ended

    @staticmethod
    def _outcome(org: Organization, now: datetime) -> str | None:
        """Why a recorded trial is over, or None while it runs."""
        if org.trial_plan is None or org.trial_ends_at is None:
            return None
        if org.trial_previous_plan != _plan_key(org):
            return "converted" if org.plan == plan_key_parts(org.trial_plan)[0] else "plan_changed"
        if as_utc(now) >= as_utc(org.trial_ends_at):
            return "expired"
        return None

    async def _publish(self, org: Organization) -> None:
        await sync_meter(self.ctx, org)
        if org.trial_ends_at is not None and active_trial(org, self.ctx.catalog) is not None:
            try:
                await pin_config_expiry(self.ctx.redis, str(org.id), as_utc(org.trial_ends_at))
            except (RedisError, OSError) as exc:  # the trials job pins it again near the end
                log.warning("trials.pin_failed", organization_id=str(org.id), error=type(exc).__name__)


async def end_trial_for_paid_plan(session: AsyncSession, ctx: AppContext, org: Organization) -> bool:
    """End ``org``'s running trial because it bought a paid plan (Checkout). For billing: call it
    right after ``OrganizationService.change_plan(org, plan, ..., billing_source="stripe")`` with
    the same session. Returns False when no trial was running. Idempotent."""
    return await TrialService(session, ctx).end(org, "converted", BILLING_ACTOR)
