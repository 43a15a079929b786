"""The provider-neutral marketplace core: provision, change plan, deprovision, SSO target, tokens.

A marketplace adapter (``heroku.py`` first) authenticates and parses the marketplace's HTTP contract,
then calls this service. Every operation is idempotent on ``(provider, external_id)``:

* **provision** first *claims* the external id by inserting the resource row (the unique constraint
  makes a concurrent duplicate lose), then creates the organization (slug derived from *our* id, so
  an interrupted attempt finds it again), the org API key and the encrypted config -- each step
  committed, each step safe to redo. A duplicate delivery returns the stored config; a delivery that
  finds another request mid-way waits briefly for it, and takes the work over if its claim expired
  (that request died).
* **change plan** and **deprovision** go through :class:`OrganizationService`, which commits, audits
  and pushes the new quota config to the meter at once.
* Marketplace orgs carry ``billing_source="marketplace"``: their limits come from the mapped plan and
  they are never charged through Stripe.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.context import AppContext
from app.db.models import MarketplaceRequest, MarketplaceResource, Organization
from app.marketplace.credentials import TokenVault
from app.marketplace.errors import (
    ProvisioningInProgress,
    ResourceDeprovisioned,
    ResourceGone,
    ResourceNotFound,
    SsoRefused,
)
from app.marketplace.repositories import MarketplaceRequestRepository, MarketplaceResourceRepository
from app.orgs.errors import ApiKeyNotFound
from app.orgs.repositories import OrganizationRepository
from app.orgs.schemas import OrganizationCreate
from app.orgs.services import ApiKeyService, OrganizationService

log = structlog.get_logger(__name__)

CLAIM = timedelta(seconds=15)
"""How long a provisioning request owns a fresh resource before another delivery may take over."""
PEER_WAIT_SECONDS = 2.0
API_KEY_NAME = "marketplace-addon"

ConfigRenderer = Callable[[Organization, str], dict[str, str]]
"""``(org, api_key_secret) -> config vars``: the adapter's naming rules."""


@dataclass(frozen=True, slots=True)
class ProvisionCommand:
    provider: str
    external_id: str
    plan: str
    """The marketplace's plan slug."""
    tollgate_plan: str
    region: str | None = None
    name: str | None = None
    callback_url: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    grant_code: str | None = None
    grant_expires_at: datetime | None = None
    asynchronous: bool = False


@dataclass(frozen=True, slots=True)
class Provisioned:
    resource: MarketplaceResource
    config: dict[str, str]
    created: bool


@dataclass(frozen=True, slots=True)
class PlanChanged:
    resource: MarketplaceResource
    config: dict[str, str]
    previous_plan: str
    changed: bool


class MarketplaceService:
    def __init__(self, session: AsyncSession, ctx: AppContext, vault: TokenVault) -> None:
        self.session = session
        self.ctx = ctx
        self.vault = vault
        self.resources = MarketplaceResourceRepository(session=session)

    # -- the inbox (its own session: an entry never rides along with, or expires, the work's objects)
    async def record(
        self,
        provider: str,
        dedupe_key: str,
        action: str,
        external_id: str | None,
        payload: dict[str, Any],
    ) -> bool:
        """Write what the marketplace asked (``True`` if this key is new). Committed at once, so the
        request is on record even if handling it fails."""
        async with self.ctx.sessions() as inbox:
            new = await MarketplaceRequestRepository(session=inbox).record(
                provider=provider,
                dedupe_key=dedupe_key[:200],
                action=action,
                external_id=external_id,
                payload=payload,
                now=self.ctx.clock.now(),
            )
            await inbox.commit()
        return new

    async def answer(
        self,
        provider: str,
        dedupe_key: str,
        status_code: int,
        result: dict[str, Any],
        *,
        failed: bool = False,
    ) -> None:
        """Record what we answered (the latest answer for this key). After a failure the work's
        session is rolled back first: nothing half-done survives, and no lock is held meanwhile."""
        if failed:
            await self.session.rollback()
        async with self.ctx.sessions() as inbox:
            await MarketplaceRequestRepository(session=inbox).answer(
                provider, dedupe_key[:200], status_code, result, self.ctx.clock.now()
            )
            await inbox.commit()

    # -- lifecycle
    async def provision(self, cmd: ProvisionCommand, render: ConfigRenderer) -> Provisioned:
        resource = await self.resources.find(cmd.provider, cmd.external_id)
        owner = False
        if resource is None:
            resource = await self._claim(cmd)
            owner = resource is not None
            if resource is None:  # a concurrent delivery claimed it first
                resource = await self.resources.find(cmd.provider, cmd.external_id)
                if resource is None:  # pragma: no cover - the winner's row is committed
                    raise ProvisioningInProgress
        if resource.state == "deprovisioned":
            raise ResourceDeprovisioned
        if resource.config_encrypted is not None:
            return Provisioned(resource, self.config(resource), created=False)
        if not owner:
            resource = await self._wait_or_take_over(resource)
            if resource.config_encrypted is not None:
                return Provisioned(resource, self.config(resource), created=False)
        config = await self._complete(resource, cmd, render)
        return Provisioned(resource, config, created=owner)

    async def change_plan(self, provider: str, reference: str, plan: str, tollgate_plan: str) -> PlanChanged:
        resource = await self.get(provider, reference)
        if resource.state == "deprovisioned":
            raise ResourceGone
        org = await self._org(resource)
        previous = resource.plan
        changed = previous != plan or org.plan != tollgate_plan
        if changed:
            resource.plan = plan
            # commits the resource row with the org's plan change, and pushes the new limits
            await OrganizationService(self.session, self.ctx).change_plan(
                org, tollgate_plan, self._actor(provider), billing_source="marketplace"
            )
            await self.session.commit()
        return PlanChanged(resource, self.config(resource), previous, changed)

    async def deprovision(self, provider: str, reference: str) -> MarketplaceResource:
        """Stop the org (the meter refuses every consume as ``suspended``); keep its data."""
        resource = await self.get(provider, reference)
        if resource.state == "deprovisioned":
            raise ResourceGone
        actor = self._actor(provider)
        org = await self._find_org(resource)
        if org is not None and resource.api_key_id is not None:
            # first, and idempotent: an interrupted deprovision redone still revokes the key
            with contextlib.suppress(ApiKeyNotFound):
                await ApiKeyService(self.session, self.ctx).revoke(org, resource.api_key_id, actor)
        resource.state = "deprovisioned"
        resource.deprovisioned_at = self.ctx.clock.now()
        resource.claimed_until = None
        resource.config_encrypted = None
        resource.oauth_grant_encrypted = None
        resource.access_token_encrypted = None
        resource.refresh_token_encrypted = None
        if org is not None:
            await OrganizationService(self.session, self.ctx).set_status(org, "deprovisioned", actor)
        await self.session.commit()
        return resource

    async def sso_target(self, provider: str, reference: str) -> tuple[MarketplaceResource, Organization]:
        """The resource and org a verified SSO request signs into; 403 for unknown or removed ones."""
        resource = await self.resources.find_by_reference(provider, reference)
        if resource is None:
            raise SsoRefused("No such add-on resource.")
        if resource.state == "deprovisioned":
            raise SsoRefused("This add-on has been deprovisioned.")
        org = await self._find_org(resource)
        if org is None or org.status == "deprovisioned":
            raise SsoRefused("This add-on is not provisioned yet.")
        return resource, org

    # -- outbound tokens and async completion (used by the adapters' jobs)
    async def get(self, provider: str, reference: str) -> MarketplaceResource:
        resource = await self.resources.find_by_reference(provider, reference)
        if resource is None:
            raise ResourceNotFound
        return resource

    async def get_by_id(self, resource_id: UUID) -> MarketplaceResource | None:
        return await self.resources.get_one_or_none(id=resource_id)

    def grant_code(self, resource: MarketplaceResource) -> str | None:
        if resource.oauth_grant_encrypted is None:
            return None
        return self.vault.decrypt(resource.oauth_grant_encrypted)

    def access_token(self, resource: MarketplaceResource) -> str | None:
        if resource.access_token_encrypted is None:
            return None
        return self.vault.decrypt(resource.access_token_encrypted)

    def refresh_token(self, resource: MarketplaceResource) -> str | None:
        if resource.refresh_token_encrypted is None:
            return None
        return self.vault.decrypt(resource.refresh_token_encrypted)

    async def store_tokens(
        self, resource: MarketplaceResource, access: str, refresh: str | None, expires_in: int
    ) -> bool:
        """Keep the marketplace's OAuth tokens (encrypted); the one-time grant code is spent.
        ``False`` (nothing kept) if the resource was deprovisioned meanwhile."""
        await self.session.refresh(resource)
        if resource.state == "deprovisioned":
            await self.session.rollback()
            return False
        resource.access_token_encrypted = self.vault.encrypt(access)
        if refresh:
            resource.refresh_token_encrypted = self.vault.encrypt(refresh)
        resource.access_token_expires_at = self.ctx.clock.now() + timedelta(seconds=max(0, expires_in))
        resource.oauth_grant_encrypted = None
        await self.session.commit()
        return True

    async def mark_provisioned(self, resource: MarketplaceResource) -> bool:
        """``provisioning`` -> ``provisioned`` only: never resurrects a resource deprovisioned
        while the marketplace call was in flight."""
        done = await self.resources.mark_provisioned(resource.id, self.ctx.clock.now())
        await self.session.commit()
        await self.session.refresh(resource)
        return done

    async def pending(self, provider: str) -> list[MarketplaceResource]:
        resources = await self.resources.pending(provider, self.ctx.clock.now())
        await self.session.rollback()
        return resources

    def config(self, resource: MarketplaceResource) -> dict[str, str]:
        if resource.config_encrypted is None:
            return {}
        return {str(k): str(v) for k, v in self.vault.decrypt_json(resource.config_encrypted).items()}

    # -- operator reads
    async def resources_page(
        self, provider: str | None, limit: int, offset: int
    ) -> tuple[list[MarketplaceResource], int]:
        return await self.resources.page(provider, limit, offset)

    async def requests_page(
        self, provider: str | None, external_id: str | None, limit: int, offset: int
    ) -> tuple[list[MarketplaceRequest], int]:
        return await MarketplaceRequestRepository(session=self.session).page(
            provider, external_id, limit, offset
        )

    # -- helpers
    @staticmethod
    def _actor(provider: str) -> str:
        return f"marketplace:{provider}"

    @staticmethod
    def _slug(resource: MarketplaceResource) -> str:
        return f"{resource.provider}-{resource.id.hex}"[:63]

    async def _claim(self, cmd: ProvisionCommand) -> MarketplaceResource | None:
        resource = MarketplaceResource(
            provider=cmd.provider,
            external_id=cmd.external_id,
            plan=cmd.plan,
            region=cmd.region,
            name=cmd.name,
            state="provisioning",
            callback_url=cmd.callback_url,
            options=cmd.options,
            oauth_grant_encrypted=self.vault.encrypt(cmd.grant_code) if cmd.grant_code else None,
            oauth_grant_expires_at=cmd.grant_expires_at,
            claimed_until=self.ctx.clock.now() + CLAIM,
        )
        self.session.add(resource)
        try:
            await self.session.commit()
        except IntegrityError:
            await self.session.rollback()
            return None
        return resource

    async def _wait_or_take_over(self, resource: MarketplaceResource) -> MarketplaceResource:
        deadline = time.monotonic() + PEER_WAIT_SECONDS
        resource_id = resource.id
        while True:
            await self.session.rollback()  # a fresh snapshot (SQLite WAL readers keep theirs)
            fresh = await self.resources.get_one_or_none(id=resource_id)
            if fresh is None:  # pragma: no cover - resources are never deleted
                raise ResourceNotFound
            if fresh.state == "deprovisioned":
                raise ResourceDeprovisioned
            if fresh.config_encrypted is not None:
                return fresh
            now = self.ctx.clock.now()
            expired = fresh.claimed_until is None or fresh.claimed_until <= now
            if expired and await self.resources.take_over(fresh.id, fresh.claimed_until, now + CLAIM):
                await self.session.commit()
                log.warning("marketplace.provision_taken_over", resource_id=str(fresh.id))
                await self.session.refresh(fresh)
                return fresh
            if time.monotonic() >= deadline:
                raise ProvisioningInProgress(headers={"Retry-After": "2"})
            await asyncio.sleep(0.05)

    async def _complete(
        self, resource: MarketplaceResource, cmd: ProvisionCommand, render: ConfigRenderer
    ) -> dict[str, str]:
        actor = self._actor(cmd.provider)
        org = await self._find_org(resource)
        if org is None:
            name = (cmd.name or f"{cmd.provider} add-on {resource.id.hex[:8]}")[:200]
            org = await OrganizationService(self.session, self.ctx).create(
                OrganizationCreate(name=name, slug=self._slug(resource), plan=cmd.tollgate_plan),
                actor,
                billing_source="marketplace",
            )
        resource.organization_id = org.id
        keys = ApiKeyService(self.session, self.ctx)
        for leftover in await keys.list(org):  # from an attempt that died before saving its config
            if leftover.name == API_KEY_NAME:
                await keys.revoke(org, leftover.id, actor)
        key, secret = await keys.create(org, API_KEY_NAME, actor)
        config = render(org, secret)
        resource.api_key_id = key.id
        resource.config_encrypted = self.vault.encrypt_json(dict(config))
        resource.claimed_until = None
        if not cmd.asynchronous:
            resource.state = "provisioned"
            resource.provisioned_at = self.ctx.clock.now()
        await self.session.commit()
        return config

    async def _find_org(self, resource: MarketplaceResource) -> Organization | None:
        orgs = OrganizationRepository(session=self.session)
        if resource.organization_id is not None:
            return await orgs.get_one_or_none(id=resource.organization_id)
        return await orgs.get_one_or_none(slug=self._slug(resource))

    async def _org(self, resource: MarketplaceResource) -> Organization:
        org = await self._find_org(resource)
        if org is None:
            raise ProvisioningInProgress
        return org
