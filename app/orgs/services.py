"""Organization lifecycle. Each public method that changes state commits before it returns, then
pushes the org's new quota configuration to the meter (after the commit, never inside it)."""

from __future__ import annotations

import re
import secrets
from datetime import timedelta
from typing import Any
from uuid import UUID

import msgspec
import structlog
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.principal import Principal
from app.context import AppContext
from app.db.models import ApiKey, AuditEvent, Organization
from app.errors import Conflict, Forbidden
from app.metering.config import build_quota_config, org_limits, org_period
from app.orgs import schemas
from app.orgs.errors import ApiKeyNotFound, InvalidOverrides, SlugTaken, UnknownPlan
from app.orgs.repositories import ApiKeyRepository, AuditRepository, OrganizationRepository
from app.plans import CATEGORIES, Overrides
from app.plans.limits import OverridesError
from app.security import ORG_KEY_PREFIX, display_prefix, hash_secret, new_secret

log = structlog.get_logger(__name__)


def slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:50]
    return slug if len(slug) >= 2 else f"org-{slug}".strip("-")


async def sync_meter(ctx: AppContext, org: Organization) -> None:
    """Materialize ``org``'s quota config in Redis. Failures are retried by the background loop;
    the database stays the source of truth."""
    try:
        config = build_quota_config(org, ctx.catalog, ctx.clock.now(), ctx.settings.meter)
        await ctx.meter.publish(config)
        ctx.pending_publish.discard(str(org.id))
    except (RedisError, OSError) as exc:
        ctx.pending_publish.add(str(org.id))
        log.warning("meter.publish_failed", organization_id=str(org.id), error=type(exc).__name__)


class OrganizationService:
    def __init__(self, session: AsyncSession, ctx: AppContext) -> None:
        self.session = session
        self.ctx = ctx
        self.repo = OrganizationRepository(session=session)
        self.audit_repo = AuditRepository(session=session)

    # -- reads
    async def get(self, principal: Principal, organization_id: UUID) -> Organization:
        return await self.repo.get_for(principal, organization_id)

    async def page(self, limit: int, offset: int) -> tuple[list[Organization], int]:
        return await self.repo.page(limit, offset)

    async def audit_page(self, org: Organization, limit: int, offset: int) -> tuple[list[AuditEvent], int]:
        return await self.audit_repo.page_for(org.id, limit, offset)

    # -- writes
    async def create(
        self, data: schemas.OrganizationCreate, actor: str, *, billing_source: str = "self"
    ) -> Organization:
        plan_name = data.plan or self.ctx.catalog.default_plan
        if plan_name not in self.ctx.catalog:
            raise UnknownPlan(f"Unknown plan {plan_name!r}; plans: {self.ctx.catalog.names()}")
        plan = self.ctx.catalog.current(plan_name)
        if data.slug is not None:
            slug = data.slug
            if await self.repo.slug_exists(slug):
                raise SlugTaken
        else:
            slug = slugify(data.name)
            while await self.repo.slug_exists(slug):
                slug = f"{slugify(data.name)[:50]}-{secrets.token_hex(3)}"
        now = self.ctx.clock.now()
        org = Organization(
            name=data.name,
            slug=slug,
            plan=plan.name,
            plan_version=plan.version,
            status="active",
            billing_source=billing_source,
            overrides={},
            on_demand_budget_cents=0,
            project_caps={},
            period_anchor=now,
            config_version=1,
        )
        await self.repo.add(org)
        self._audit(org, "organization.created", actor, {"plan": plan.key, "slug": slug})
        await self._commit(org)
        return org

    async def update(
        self, org: Organization, patch: schemas.OrganizationUpdate, principal: Principal
    ) -> Organization:
        changes: dict[str, Any] = {}
        if patch.overrides is not msgspec.UNSET:
            if not principal.is_admin:
                raise Forbidden("Only the control plane (admin) may set overrides.")
            try:
                overrides = Overrides.from_dict(patch.overrides).as_dict()
            except OverridesError as exc:
                raise InvalidOverrides(str(exc)) from exc
            changes["overrides"] = overrides
        if patch.name is not msgspec.UNSET:
            changes["name"] = patch.name
        if patch.on_demand_budget_cents is not msgspec.UNSET:
            changes["on_demand_budget_cents"] = patch.on_demand_budget_cents
        if patch.spike_protection is not msgspec.UNSET:
            changes["spike_protection"] = patch.spike_protection
        if patch.project_caps is not msgspec.UNSET:
            unknown = {c for caps in patch.project_caps.values() for c in caps} - set(CATEGORIES)
            if unknown:
                raise InvalidOverrides(f"unknown categories: {', '.join(sorted(unknown))}")
            changes["project_caps"] = patch.project_caps
        if not changes:
            return org
        before = {k: getattr(org, k) for k in changes}
        for key, value in changes.items():
            setattr(org, key, value)
        org.config_version += 1
        self._audit(
            org,
            "organization.updated",
            principal.actor,
            {"before": _jsonable(before), "after": _jsonable(changes)},
        )
        await self._commit(org)
        return org

    async def set_status(self, org: Organization, status: str, actor: str) -> Organization:
        if org.status == status:
            return org
        if org.status == "deprovisioned":
            raise Conflict("A deprovisioned organization cannot change status.")
        previous, org.status = org.status, status
        org.config_version += 1
        self._audit(org, "status.changed", actor, {"from": previous, "to": status})
        await self._commit(org)
        return org

    async def change_plan(
        self,
        org: Organization,
        plan: str,
        actor: str,
        *,
        version: int | None = None,
        billing_source: str | None = None,
    ) -> Organization:
        """Move ``org`` to ``plan`` (the current version unless given). Usage so far in the period
        counts against the new limits at once."""
        if plan not in self.ctx.catalog:
            raise UnknownPlan(f"Unknown plan {plan!r}; plans: {self.ctx.catalog.names()}")
        target = self.ctx.catalog.get(plan, version)
        if (org.plan, org.plan_version) == (target.name, target.version) and (
            billing_source is None or billing_source == org.billing_source
        ):
            return org
        previous = f"{org.plan}@v{org.plan_version}"
        org.plan, org.plan_version = target.name, target.version
        if billing_source is not None:
            org.billing_source = billing_source
        org.config_version += 1
        self._audit(org, "plan.changed", actor, {"from": previous, "to": target.key})
        await self._commit(org)
        return org

    async def pause_spike(self, org: Organization, minutes: int, actor: str) -> Organization:
        org.spike_paused_until = self.ctx.clock.now() + timedelta(minutes=minutes)
        org.config_version += 1
        self._audit(org, "spike_protection.paused", actor, {"until": org.spike_paused_until.isoformat()})
        await self._commit(org)
        return org

    async def reset_spike(self, org: Organization, actor: str) -> Organization:
        await self.ctx.meter.reset_spike(str(org.id), CATEGORIES)
        self._audit(org, "spike_protection.reset", actor, {})
        await self.session.commit()
        return org

    # -- helpers
    def _audit(self, org: Organization, kind: str, actor: str, detail: dict[str, Any]) -> None:
        self.session.add(AuditEvent(organization_id=org.id, kind=kind, actor=actor, detail=detail))

    async def _commit(self, org: Organization) -> None:
        await self.session.commit()
        await sync_meter(self.ctx, org)

    def to_schema(self, org: Organization) -> schemas.Organization:
        limits = org_limits(org, self.ctx.catalog)
        start, end = org_period(org, self.ctx.clock.now())
        return schemas.Organization(
            id=org.id,
            name=org.name,
            slug=org.slug,
            plan=org.plan,
            plan_version=org.plan_version,
            status=org.status,
            billing_source=org.billing_source,
            current_period=schemas.Period(start=start, end=end),
            quotas=dict(limits.quotas),
            on_demand_budget_cents=limits.on_demand_budget_cents,
            spike_protection=limits.spike_protection,
            spike_paused_until=org.spike_paused_until,
            overrides=org.overrides or {},
            project_caps=org.project_caps or {},
            created_at=org.created_at,
        )


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return msgspec.to_builtins(values)  # type: ignore[no-any-return]


class ApiKeyService:
    def __init__(self, session: AsyncSession, ctx: AppContext) -> None:
        self.session = session
        self.ctx = ctx
        self.repo = ApiKeyRepository(session=session)

    async def create(self, org: Organization, name: str, actor: str) -> tuple[ApiKey, str]:
        secret = new_secret(ORG_KEY_PREFIX)
        key = ApiKey(
            organization_id=org.id,
            name=name,
            prefix=display_prefix(secret),
            key_hash=hash_secret(secret),
        )
        await self.repo.add(key)
        self.session.add(
            AuditEvent(
                organization_id=org.id,
                kind="api_key.created",
                actor=actor,
                detail={"name": name, "prefix": key.prefix},
            )
        )
        await self.session.commit()
        return key, secret

    async def list(self, org: Organization) -> list[ApiKey]:
        return await self.repo.active_for(org.id)

    async def revoke(self, org: Organization, key_id: UUID, actor: str) -> None:
        key = await self.repo.get_one_or_none(id=key_id, organization_id=org.id)
        if key is None or key.revoked_at is not None:
            raise ApiKeyNotFound
        key.revoked_at = self.ctx.clock.now()
        self.session.add(
            AuditEvent(
                organization_id=org.id,
                kind="api_key.revoked",
                actor=actor,
                detail={"prefix": key.prefix},
            )
        )
        await self.session.commit()
        self.ctx.auth.forget(key.key_hash)
