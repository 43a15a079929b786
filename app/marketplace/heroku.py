"""The Heroku adapter: Heroku's add-on partner API v3 mapped onto the marketplace core.

Inbound (``/marketplace/heroku``): Basic auth with the manifest id and password, checked before
anything else; provision (200 with config, or 202 for plans marked async), plan change, deprovision
(204, then 410 on repeats), SSO (``user_scoped_resource_token`` > ``resource_token`` > v1 ``token``).
Outbound (worker only, never inside a request): the OAuth grant exchange, ``PATCH`` of config vars and
``POST .../actions/provision`` against the *configured* Platform API base -- never against the
``callback_url`` a request carries, so a forged request cannot make us send a token elsewhere.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote
from uuid import UUID

import httpx
import structlog
from msgspec import Struct
from sqlalchemy.ext.asyncio import AsyncSession

from app.context import AppContext
from app.db.models import Organization
from app.errors import TollgateError
from app.marketplace import schemas
from app.marketplace.credentials import MarketplaceSecrets, TokenVault
from app.marketplace.errors import (
    MarketplaceCredentialsInvalid,
    MarketplacePlanUnknown,
    MarketplaceRegionUnsupported,
    ProvisioningNotQueued,
    SsoRefused,
)
from app.marketplace.services import MarketplaceService, ProvisionCommand
from app.security import constant_time_equals
from app.settings import Settings

log = structlog.get_logger(__name__)

PROVIDER = "heroku"
RESOURCES_PATH = "/marketplace/heroku/resources"
SSO_PATH = "/marketplace/heroku/sso"
ADDONS_MEDIA_TYPE = "application/vnd.heroku-addons+json; version=3"
PLATFORM_ACCEPT = "application/vnd.heroku+json; version=3"
CONFIG_VAR_NAME = re.compile(r"^[A-Z][0-9A-Z_]+$")
REFRESH_MARGIN = timedelta(seconds=90)
"""Refresh an access token this close to expiry (as Heroku's example add-on does)."""

REGIONS: dict[str, str] = {
    "us": "us-east-1",
    "virginia": "us-east-1",
    "eu": "eu-west-1",
    "dublin": "eu-west-1",
    "frankfurt": "eu-central-1",
    "oregon": "us-west-2",
    "tokyo": "ap-northeast-1",
    "sydney": "ap-southeast-2",
}
"""Manifest region -> the AWS region Heroku names in a provision (``amazon-web-services::<region>``)."""

JOB_RETRIES = 8


# ---------------------------------------------------------------------------- SSO tokens
def v1_token(provider_id: str, salt: str, timestamp: str) -> str:
    """Legacy ``token``: ``sha1(id:salt:timestamp)`` with the id we returned at provisioning."""
    return hashlib.sha1(f"{provider_id}:{salt}:{timestamp}".encode(), usedforsecurity=False).hexdigest()


def resource_token(resource_uuid: str, salt: str, timestamp: str) -> str:
    """v3 ``resource_token``: ``sha1(resource_uuid:salt:timestamp)``."""
    return hashlib.sha1(f"{resource_uuid}:{salt}:{timestamp}".encode(), usedforsecurity=False).hexdigest()


def user_scoped_resource_token(
    resource_uuid: str, salt: str, timestamp: str, user_uuid: str, user_email: str
) -> str:
    """v3 ``user_scoped_resource_token``: ``sha256(resource_uuid:salt:timestamp:user_uuid:user_email)``."""
    raw = f"{resource_uuid}:{salt}:{timestamp}:{user_uuid}:{user_email}"
    return hashlib.sha256(raw.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class SsoClaim:
    reference: str
    """``resource_id`` (v3) or ``id`` (v1): the resource the user signs into."""
    kind: str
    timestamp: str
    user_id: str | None
    app: str | None


# ---------------------------------------------------------------------------- the adapter
class HerokuAddon:
    """Everything Heroku-specific and pure: credentials, plan/region mapping, config vars, SSO, manifest."""

    def __init__(
        self, settings: Settings, secrets: MarketplaceSecrets, plans: Iterable[str] | None = None
    ) -> None:
        """``plans``: the running catalog's plan names (``None`` skips that check, e.g. the CLI)."""
        self.settings = settings
        self.catalog_plans = frozenset(plans) if plans is not None else None
        self.heroku = settings.marketplace.heroku
        self.secrets = secrets
        self.vault = TokenVault(secrets.token_key)
        self.prefix = self.heroku.config_vars_prefix or self.heroku.id.upper().replace("-", "_")
        for name in self.config_var_names:
            if not CONFIG_VAR_NAME.match(name):
                raise ValueError(f"config var {name!r} must match {CONFIG_VAR_NAME.pattern}")
        userpass = f"{self.heroku.id}:{secrets.heroku_password}".encode()
        self._auth = "Basic " + base64.b64encode(userpass).decode()

    # -- inbound auth
    def check_auth(self, header: str | None) -> None:
        """Basic ``id:password``, compared in constant time; 401 with a challenge otherwise."""
        if not header or not constant_time_equals(header.strip(), self._auth):
            raise MarketplaceCredentialsInvalid(
                headers={"WWW-Authenticate": f'Basic realm="{self.heroku.id}", charset="UTF-8"'}
            )

    # -- mapping
    def plan_for(self, slug: str) -> str:
        plan = self.heroku.plans.get(slug)
        if plan is None:
            raise MarketplacePlanUnknown(f"plan not found: {slug!r} (plans: {', '.join(self.heroku.plans)})")
        if self.catalog_plans is not None and plan not in self.catalog_plans:
            log.error("marketplace.plan_map_broken", plan=slug, tollgate_plan=plan)
            raise MarketplacePlanUnknown(f"plan not found: {slug!r} is not available")
        return plan

    def is_async(self, slug: str) -> bool:
        return slug in self.heroku.async_plans

    def check_region(self, region: str | None) -> None:
        if region is None or "*" in self.heroku.regions:
            return
        allowed = set(self.heroku.regions)
        allowed |= {f"amazon-web-services::{REGIONS[r]}" for r in self.heroku.regions if r in REGIONS}
        if region not in allowed:
            raise MarketplaceRegionUnsupported(
                f"region not supported: {region!r} (regions: {', '.join(self.heroku.regions)})"
            )

    # -- config vars
    @property
    def config_var_names(self) -> list[str]:
        return [f"{self.prefix}_URL", f"{self.prefix}_ORG_ID", f"{self.prefix}_API_KEY"]

    def render_config(self, org: Organization, api_key: str) -> dict[str, str]:
        url, org_id, key = self.config_var_names
        return {url: self.settings.server.public_url.rstrip("/"), org_id: str(org.id), key: api_key}

    # -- SSO
    def verify_sso(self, form: Mapping[str, str], now: float) -> SsoClaim:
        """Recompute the strongest token present and compare in constant time; 403 otherwise."""
        timestamp = (form.get("timestamp") or "").strip()
        if not timestamp.isdigit() or len(timestamp) > 12:
            raise SsoRefused("The sign-in request has no valid timestamp.")
        ts = int(timestamp)
        if ts > int(now):
            raise SsoRefused("The sign-in request is dated in the future.")
        if now - ts > self.settings.marketplace.sso_max_age:
            raise SsoRefused("The sign-in request has expired; open the add-on from Heroku again.")
        salt = self.secrets.heroku_sso_salt
        resource_id = form.get("resource_id") or ""
        user_id = form.get("user_id") or None
        if form.get("user_scoped_resource_token"):
            email = form.get("email") or ""
            if not (resource_id and user_id and email):
                raise SsoRefused("The sign-in request is incomplete.")
            kind, given = "user_scoped_resource_token", form["user_scoped_resource_token"]
            expected = user_scoped_resource_token(resource_id, salt, timestamp, user_id, email)
            reference = resource_id
        elif form.get("resource_token"):
            if not resource_id:
                raise SsoRefused("The sign-in request is incomplete.")
            kind, given = "resource_token", form["resource_token"]
            expected = resource_token(resource_id, salt, timestamp)
            reference = resource_id
        elif form.get("token"):
            provider_id = form.get("id") or ""
            if not provider_id:
                raise SsoRefused("The sign-in request is incomplete.")
            kind, given, reference = "token", form["token"], provider_id
            expected = v1_token(provider_id, salt, timestamp)
        else:
            raise SsoRefused("The sign-in request carries no token.")
        if not constant_time_equals(given.strip().lower(), expected):
            log.warning("marketplace.sso_bad_token", kind=kind)
            raise SsoRefused("The sign-in token is not valid.")
        return SsoClaim(reference[:100], kind, timestamp, user_id, form.get("app") or None)

    # -- manifest
    def manifest(self) -> dict[str, Any]:
        """The ``addon-manifest.json`` for this deployment, in Heroku's v3 format."""
        production = (self.heroku.production_url or self.settings.server.public_url).rstrip("/")
        local = f"http://localhost:{self.settings.server.port}"
        return {
            "id": self.heroku.id,
            "name": self.heroku.name,
            "api": {
                "config_vars_prefix": self.prefix,
                "config_vars": self.config_var_names,
                "password": self.secrets.heroku_password,
                "sso_salt": self.secrets.heroku_sso_salt,
                "regions": list(self.heroku.regions),
                "requires": [],
                "production": {"base_url": production + RESOURCES_PATH, "sso_url": production + SSO_PATH},
                "test": {"base_url": local + RESOURCES_PATH, "sso_url": local + SSO_PATH},
                "version": "3",
            },
        }


# ---------------------------------------------------------------------------- outbound
class HerokuApiError(Exception):
    """A Platform API or OAuth call failed (the job retries with backoff)."""


@dataclass(frozen=True, slots=True)
class OAuthTokens:
    access_token: str
    refresh_token: str | None
    expires_in: int
    token_type: str


class HerokuPlatform:
    """The calls a provider makes to Heroku, against configurable base URLs."""

    def __init__(self, settings: Settings, client_secret: str | None) -> None:
        self.heroku = settings.marketplace.heroku
        self.client_secret = client_secret

    async def exchange_grant(self, code: str) -> OAuthTokens:
        return await self._token({"grant_type": "authorization_code", "code": code})

    async def refresh(self, refresh_token: str) -> OAuthTokens:
        return await self._token({"grant_type": "refresh_token", "refresh_token": refresh_token})

    async def set_config(self, access_token: str, addon_id: str, config: Mapping[str, str]) -> None:
        body = {"config": [{"name": k, "value": v} for k, v in config.items()]}
        await self._platform("PATCH", f"/addons/{quote(addon_id, safe='')}/config", access_token, body)

    async def mark_provisioned(self, access_token: str, addon_id: str) -> None:
        await self._platform("POST", f"/addons/{quote(addon_id, safe='')}/actions/provision", access_token)

    async def _token(self, params: dict[str, str]) -> OAuthTokens:
        if not self.client_secret:
            raise HerokuApiError("marketplace.heroku.oauth_client_secret is not configured")
        async with httpx.AsyncClient(timeout=self.heroku.http_timeout) as client:
            try:
                resp = await client.post(
                    self.heroku.oauth_token_url,
                    data={**params, "client_secret": self.client_secret},
                    headers={"Accept": "application/json"},
                )
            except httpx.HTTPError as exc:
                raise HerokuApiError(f"token endpoint unreachable: {type(exc).__name__}") from None
        if resp.status_code != 200:
            raise HerokuApiError(f"token endpoint answered {resp.status_code}")
        try:
            body = resp.json()
            return OAuthTokens(
                access_token=str(body["access_token"]),
                refresh_token=str(body["refresh_token"]) if body.get("refresh_token") else None,
                expires_in=int(body.get("expires_in") or 0),
                token_type=str(body.get("token_type") or "Bearer"),
            )
        except (ValueError, KeyError, TypeError):
            raise HerokuApiError("token endpoint answered an unreadable body") from None

    async def _platform(
        self, method: str, path: str, access_token: str, body: dict[str, Any] | None = None
    ) -> None:
        url = self.heroku.api_url.rstrip("/") + path
        headers = {"Authorization": f"Bearer {access_token}", "Accept": PLATFORM_ACCEPT}
        async with httpx.AsyncClient(timeout=self.heroku.http_timeout) as client:
            try:
                resp = await client.request(method, url, json=body, headers=headers)
            except httpx.HTTPError as exc:
                raise HerokuApiError(f"{method} {path} failed: {type(exc).__name__}") from None
        if resp.status_code >= 300:
            raise HerokuApiError(f"{method} {path} answered {resp.status_code}")


# ---------------------------------------------------------------------------- the service
def _sanitized(data: Struct) -> dict[str, Any]:
    """The request as recorded: no grant code, no log-drain token or log URL credentials."""
    from msgspec import to_builtins

    payload: dict[str, Any] = to_builtins(data)
    payload = {k: v for k, v in payload.items() if v is not None}
    if isinstance(payload.get("oauth_grant"), dict):
        payload["oauth_grant"] = {k: v for k, v in payload["oauth_grant"].items() if k != "code"}
    for secret in ("log_drain_token", "log_input_url"):
        if secret in payload:
            payload[secret] = "[redacted]"
    return payload


def _digest(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


class HerokuAddonService:
    """Heroku's HTTP contract over :class:`MarketplaceService`, with every request in the inbox."""

    def __init__(self, session: AsyncSession, ctx: AppContext, addon: HerokuAddon) -> None:
        self.ctx = ctx
        self.addon = addon
        self.core = MarketplaceService(session, ctx, addon.vault)

    async def provision(
        self, data: schemas.HerokuProvision
    ) -> tuple[int, schemas.HerokuProvisioned | schemas.HerokuProvisioning]:
        payload = _sanitized(data)
        key = f"provision:{data.uuid}:{_digest(payload)}"
        await self.core.record(PROVIDER, key, "provision", data.uuid, payload)
        try:
            cmd = ProvisionCommand(
                provider=PROVIDER,
                external_id=data.uuid,
                plan=data.plan,
                tollgate_plan=self.addon.plan_for(data.plan),
                region=self._region(data.region),
                name=data.name,
                callback_url=data.callback_url,
                options=dict(data.options or {}),
                grant_code=data.oauth_grant.code if data.oauth_grant else None,
                grant_expires_at=_parse_time(data.oauth_grant.expires_at) if data.oauth_grant else None,
                asynchronous=self.addon.is_async(data.plan),
            )
            result = await self.core.provision(cmd, self.addon.render_config)
            resource = result.resource
            pending = resource.state == "provisioning"
            if pending or resource.oauth_grant_encrypted is not None:
                queued = await self.enqueue(resource.id)
                if pending and not queued:
                    raise ProvisioningNotQueued(headers={"Retry-After": "5"})
        except TollgateError as exc:
            await self.core.answer(PROVIDER, key, exc.status_code, {"message": str(exc.detail)}, failed=True)
            raise
        rid = str(resource.id)
        record = {"id": rid, "organization_id": str(resource.organization_id), "created": result.created}
        body: schemas.HerokuProvisioned | schemas.HerokuProvisioning
        if pending:
            status = 202
            body = schemas.HerokuProvisioning(
                id=rid, message=f"{self.addon.heroku.name} is being provisioned; it will be ready shortly."
            )
        else:
            status = 200
            body = schemas.HerokuProvisioned(
                id=rid,
                config=result.config,
                message=f"{self.addon.heroku.name} is ready on the {resource.plan} plan.",
            )
        await self.core.answer(PROVIDER, key, status, record)
        return status, body

    async def change_plan(self, reference: str, data: schemas.HerokuPlanChange) -> schemas.HerokuPlanChanged:
        payload = _sanitized(data)
        key = f"change_plan:{reference}:{_digest(payload)}"
        await self.core.record(PROVIDER, key, "change_plan", reference, payload)
        try:
            plan = self.addon.plan_for(data.plan)
            result = await self.core.change_plan(PROVIDER, reference, data.plan, plan)
        except TollgateError as exc:
            await self.core.answer(PROVIDER, key, exc.status_code, {"message": str(exc.detail)}, failed=True)
            raise
        if result.changed:
            message = f"Plan changed from {result.previous_plan} to {data.plan}."
        else:
            message = f"Already on the {data.plan} plan; nothing changed."
        await self.core.answer(
            PROVIDER, key, 200, {"from": result.previous_plan, "to": data.plan, "changed": result.changed}
        )
        return schemas.HerokuPlanChanged(config=result.config, message=message)

    async def deprovision(self, reference: str) -> None:
        key = f"deprovision:{reference}"
        await self.core.record(PROVIDER, key, "deprovision", reference, {})
        try:
            resource = await self.core.deprovision(PROVIDER, reference)
        except TollgateError as exc:
            await self.core.answer(PROVIDER, key, exc.status_code, {"message": str(exc.detail)}, failed=True)
            raise
        await self.core.answer(PROVIDER, key, 204, {"organization_id": str(resource.organization_id)})

    async def sso(self, form: Mapping[str, str]) -> Organization:
        """Verify the SSO post; the org to open a session for. A token is good for one sign-in."""
        if not self.addon.heroku.enabled:
            raise SsoRefused("The Heroku add-on is not enabled on this deployment.")
        claim = self.addon.verify_sso(form, self.ctx.clock.time())
        key = f"sso:{claim.reference}:{claim.timestamp}:{claim.kind}:{claim.user_id or ''}"
        payload = {
            "resource_id": claim.reference,
            "timestamp": claim.timestamp,
            "token_kind": claim.kind,
            "user_id": claim.user_id,
            "app": claim.app,
        }
        if not await self.core.record(PROVIDER, key, "sso", claim.reference, payload):
            exc: TollgateError = SsoRefused(
                "This sign-in request was already used; open the add-on from Heroku again."
            )
            await self.core.answer(PROVIDER, key, exc.status_code, {"message": "replayed"}, failed=True)
            raise exc
        try:
            _, org = await self.core.sso_target(PROVIDER, claim.reference)
        except TollgateError as exc:
            await self.core.answer(PROVIDER, key, exc.status_code, {"message": str(exc.detail)}, failed=True)
            raise
        await self.core.answer(PROVIDER, key, 302, {"organization_id": str(org.id)})
        return org

    def billing_location(self, org: Organization) -> str:
        return self.addon.heroku.billing_url.replace("{org_id}", str(org.id))

    # -- the worker's side
    async def complete(self, resource_id: UUID) -> dict[str, Any]:
        """Exchange the grant, then for async plans push the config and mark the add-on provisioned.
        Each step is skipped once done, so a retried job picks up where the last one stopped."""
        core = self.core
        resource = await core.get_by_id(resource_id)
        if resource is None or resource.state == "deprovisioned":
            return {"status": "skipped"}
        await core.session.commit()  # no transaction stays open across an HTTP call
        client_secret = self._client_secret()
        if not client_secret:
            log.error("marketplace.oauth_client_secret_missing", resource_id=str(resource.id))
            return {"status": "not_configured"}
        platform = HerokuPlatform(self.ctx.settings, client_secret)
        token = core.access_token(resource)
        if token is None:
            code = core.grant_code(resource)
            if code is None:
                log.error("marketplace.no_grant", resource_id=str(resource.id))
                return {"status": "no_grant"}
            tokens = await platform.exchange_grant(code)
            if not await core.store_tokens(
                resource, tokens.access_token, tokens.refresh_token, tokens.expires_in
            ):
                return {"status": "deprovisioned"}
            await self._step(resource.external_id, "oauth_exchange", {"expires_in": tokens.expires_in})
            token = tokens.access_token
        elif self._expiring(resource) and (refresh := core.refresh_token(resource)):
            tokens = await platform.refresh(refresh)
            if not await core.store_tokens(
                resource, tokens.access_token, tokens.refresh_token, tokens.expires_in
            ):
                return {"status": "deprovisioned"}
            token = tokens.access_token
        if resource.state == "provisioning" and resource.config_encrypted is not None:
            await platform.set_config(token, resource.external_id, core.config(resource))
            await platform.mark_provisioned(token, resource.external_id)
            await core.mark_provisioned(resource)
            await self._step(resource.external_id, "mark_provisioned", {"state": resource.state})
        return {"status": resource.state}

    async def _step(self, external_id: str, action: str, result: dict[str, Any]) -> None:
        key = f"{action}:{external_id}"
        await self.core.record(PROVIDER, key, action, external_id, {})
        await self.core.answer(PROVIDER, key, 200, result)

    def _expiring(self, resource: Any) -> bool:
        expires = resource.access_token_expires_at
        return expires is not None and expires - self.ctx.clock.now() < REFRESH_MARGIN

    def _client_secret(self) -> str | None:
        secret = self.addon.heroku.oauth_client_secret
        return secret.get_secret_value() if secret is not None else None

    def _region(self, region: str | None) -> str | None:
        self.addon.check_region(region)
        return region

    async def enqueue(self, resource_id: UUID) -> bool:
        queue = self.ctx.queue
        if queue is None:
            return False
        try:
            await queue.enqueue(
                "heroku_complete_provision",
                key=f"heroku-provision:{resource_id}",
                retries=JOB_RETRIES,
                retry_delay=1.0,
                retry_backoff=60,
                timeout=60,
                ttl=30,
                resource_id=str(resource_id),
            )
        except Exception as exc:
            log.warning("marketplace.enqueue_failed", resource_id=str(resource_id), error=type(exc).__name__)
            return False
        return True  # ``None`` from SAQ means the same job is already queued: fine too
