"""HTTP for marketplaces: Heroku's add-on partner API v3, and the operator's view of the inbox.

Heroku routes check Basic auth in a guard, which Litestar runs before it reads the body or looks
anything up, so bad credentials get 401 on every route, for any resource id. Their errors are
rendered the way Heroku shows them to its user: JSON with a ``message``.
"""

from __future__ import annotations

from typing import Annotated, Any

import structlog
from litestar import Controller, Request, Response, delete, get, post, put
from litestar.connection import ASGIConnection
from litestar.di import Provide
from litestar.enums import RequestEncodingType
from litestar.exceptions import HTTPException, ValidationException
from litestar.handlers import BaseRouteHandler
from litestar.params import Body, Parameter
from litestar.response import Redirect
from litestar.status_codes import HTTP_204_NO_CONTENT, HTTP_302_FOUND
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.principal import Principal
from app.context import AppContext
from app.errors import NotFound, TollgateError
from app.marketplace import schemas
from app.marketplace.deps import marketplace_secrets, provide_heroku
from app.marketplace.heroku import (
    ADDONS_MEDIA_TYPE,
    RESOURCES_PATH,
    SSO_PATH,
    HerokuAddon,
    HerokuAddonService,
)
from app.marketplace.services import MarketplaceService
from app.web import pages
from app.web import session as web_session

log = structlog.get_logger(__name__)

AnyRequest = Request[Any, Any, Any]
Limit = Annotated[int, Parameter(ge=1, le=200, description="Page size")]
Offset = Annotated[int, Parameter(ge=0, description="Items to skip")]


def _media_type(request: AnyRequest) -> str:
    """Answer in Heroku's add-ons media type when asked for it (kensa asks for plain JSON)."""
    accept = request.headers.get("accept", "")
    return ADDONS_MEDIA_TYPE if "application/vnd.heroku-addons+json" in accept else "application/json"


def _heroku_error(request: AnyRequest, exc: Exception) -> Response[dict[str, Any]]:
    headers: dict[str, str] = {}
    if isinstance(exc, TollgateError):
        status, code, message, headers = exc.status_code, exc.code, str(exc.detail), exc.headers
    elif isinstance(exc, ValidationException) or (isinstance(exc, HTTPException) and exc.status_code == 400):
        status, code = 422, "invalid_request"
        extra = getattr(exc, "extra", None) or []
        details = "; ".join(str(e.get("message", "")) for e in extra if isinstance(e, dict))
        message = "The request body is not valid" + (f": {details}" if details else ".")
    elif isinstance(exc, HTTPException):
        status, code, message = exc.status_code, "http_error", str(exc.detail)
        headers = dict(exc.headers or {})
    else:
        log.exception("marketplace.request_failed", path=request.url.path, error=type(exc).__name__)
        status, code, message = 500, "internal_error", "Something went wrong on our side; it has been logged."
    return Response(
        {"message": message, "error": code},
        status_code=status,
        headers=headers,
        media_type=_media_type(request),
    )


def heroku_basic_auth(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    heroku = provide_heroku(connection.app.state)
    if not heroku.heroku.enabled:
        raise NotFound("The Heroku add-on is not enabled on this deployment.")
    heroku.check_auth(connection.headers.get("authorization"))


HEROKU_ERRORS = {
    TollgateError: _heroku_error,
    ValidationException: _heroku_error,
    HTTPException: _heroku_error,
    Exception: _heroku_error,
}


class HerokuResourceController(Controller):
    """Heroku add-on partner API v3: provision, plan change, deprovision."""

    path = RESOURCES_PATH
    tags = ["marketplace"]
    guards = [heroku_basic_auth]
    dependencies = {"heroku": Provide(provide_heroku, sync_to_thread=False)}
    exception_handlers = HEROKU_ERRORS  # type: ignore[assignment]

    @post("/", summary="Heroku: provision an add-on resource (200 with config, or 202 when async)")
    async def provision(
        self,
        request: AnyRequest,
        data: schemas.HerokuProvision,
        session: AsyncSession,
        ctx: AppContext,
        heroku: HerokuAddon,
    ) -> Response[Any]:
        status, body = await HerokuAddonService(session, ctx, heroku).provision(data)
        return Response(body, status_code=status, media_type=_media_type(request))

    @put("/{resource_id:str}", summary="Heroku: change the plan of an add-on resource")
    async def change_plan(
        self,
        request: AnyRequest,
        resource_id: str,
        data: schemas.HerokuPlanChange,
        session: AsyncSession,
        ctx: AppContext,
        heroku: HerokuAddon,
    ) -> Response[schemas.HerokuPlanChanged]:
        body = await HerokuAddonService(session, ctx, heroku).change_plan(resource_id, data)
        return Response(body, media_type=_media_type(request))

    @delete(
        "/{resource_id:str}",
        status_code=HTTP_204_NO_CONTENT,
        summary="Heroku: deprovision (the org stops; its data is kept)",
    )
    async def deprovision(
        self, resource_id: str, session: AsyncSession, ctx: AppContext, heroku: HerokuAddon
    ) -> None:
        await HerokuAddonService(session, ctx, heroku).deprovision(resource_id)


def _sso_error(request: AnyRequest, exc: Exception) -> Response[str]:
    if isinstance(exc, TollgateError):
        status, message = exc.status_code, str(exc.detail)
    elif isinstance(exc, HTTPException) and exc.status_code < 500:
        status, message = 403, "The sign-in request is not valid."
    else:
        log.exception("marketplace.sso_failed", error=type(exc).__name__)
        status, message = 500, "Something went wrong on our side; it has been logged."
    return pages.message_page("Sign-in refused" if status < 500 else "Error", message, status)


class HerokuSsoController(Controller):
    """Heroku single sign-on: the Dashboard auto-posts a form here."""

    path = SSO_PATH
    tags = ["marketplace"]
    dependencies = {"heroku": Provide(provide_heroku, sync_to_thread=False)}
    exception_handlers = {  # type: ignore[assignment]
        TollgateError: _sso_error,
        ValidationException: _sso_error,
        HTTPException: _sso_error,
        Exception: _sso_error,
    }

    @post("/", status_code=HTTP_302_FOUND, summary="Heroku: SSO form post; redirects to the billing page")
    async def sso(
        self,
        request: AnyRequest,
        data: Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)],
        session: AsyncSession,
        ctx: AppContext,
        heroku: HerokuAddon,
    ) -> Redirect:
        service = HerokuAddonService(session, ctx, heroku)
        org = await service.sso(data)
        settings = ctx.settings
        value = web_session.issue(
            marketplace_secrets(request.app.state).session_key,
            web_session.WebSession(
                organization_id=org.id,
                source="heroku",
                user=data.get("email") or data.get("user_id") or None,
                expires_at=int(ctx.clock.time()) + settings.marketplace.session_ttl,
            ),
        )
        return Redirect(
            service.billing_location(org),
            status_code=HTTP_302_FOUND,
            cookies=[
                web_session.cookie(
                    value,
                    settings.marketplace.session_ttl,
                    secure=settings.server.public_url.startswith("https://"),
                )
            ],
        )


class MarketplaceAdminController(Controller):
    """The operator's view: which add-on resources exist and what the marketplaces asked, when."""

    path = "/v1/marketplace"
    tags = ["marketplace"]
    dependencies = {"heroku": Provide(provide_heroku, sync_to_thread=False)}

    @get("/resources", summary="Marketplace add-on resources (admin)")
    async def resources(
        self,
        principal: Principal,
        session: AsyncSession,
        ctx: AppContext,
        heroku: HerokuAddon,
        provider: str | None = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> schemas.MarketplaceResourcePage:
        principal.require("admin")
        service = MarketplaceService(session, ctx, heroku.vault)
        items, total = await service.resources_page(provider, limit, offset)
        return schemas.MarketplaceResourcePage([_resource(r) for r in items], total)

    @get("/requests", summary="The marketplace inbox, newest first (admin)")
    async def requests(
        self,
        principal: Principal,
        session: AsyncSession,
        ctx: AppContext,
        heroku: HerokuAddon,
        provider: str | None = None,
        external_id: str | None = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> schemas.MarketplaceRequestPage:
        principal.require("admin")
        service = MarketplaceService(session, ctx, heroku.vault)
        items, total = await service.requests_page(provider, external_id, limit, offset)
        return schemas.MarketplaceRequestPage(
            [
                schemas.MarketplaceRequest(
                    id=r.id,
                    provider=r.provider,
                    action=r.action,
                    dedupe_key=r.dedupe_key,
                    external_id=r.external_id,
                    payload=r.payload,
                    received_at=r.received_at,
                    last_received_at=r.last_received_at,
                    deliveries=r.deliveries,
                    status_code=r.status_code,
                    result=r.result,
                )
                for r in items
            ],
            total,
        )


def _resource(r: Any) -> schemas.MarketplaceResource:
    return schemas.MarketplaceResource(
        id=r.id,
        provider=r.provider,
        external_id=r.external_id,
        plan=r.plan,
        region=r.region,
        name=r.name,
        state=r.state,
        organization_id=r.organization_id,
        callback_url=r.callback_url,
        has_oauth_token=r.access_token_encrypted is not None,
        provisioned_at=r.provisioned_at,
        deprovisioned_at=r.deprovisioned_at,
        created_at=r.created_at,
        updated_at=r.updated_at,
    )
