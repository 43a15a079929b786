"""``create_app(settings) -> Litestar``: the whole service, built from one Settings object."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from litestar import Litestar, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from redis.exceptions import RedisError
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from app.auth.controllers import ServiceTokenController
from app.auth.services import Authenticator
from app.billing.controllers import BillingController, StripeWebhookController
from app.clock import Clock
from app.context import AppContext
from app.db.migrate import upgrade_async
from app.deps import DEPENDENCIES
from app.entitlements.controllers import EntitlementCheckController, EntitlementController
from app.errors import TollgateError
from app.infra.embedded_redis import EmbeddedRedis
from app.infra.redis import create_redis
from app.logging import configure_logging
from app.marketplace.controllers import (
    HerokuResourceController,
    HerokuSsoController,
    MarketplaceAdminController,
)
from app.metering.controllers import QuotaController, UsageController
from app.metering.fastpath import install as install_fast_path
from app.metering.meter import Meter
from app.metering.services import QuotaService
from app.metering.store import DatabaseConfigSource, UsageFlusher
from app.notifications.controllers import WebhookEndpointController
from app.notifications.services import usage_flushed
from app.orgs.controllers import OrganizationController
from app.plans import Catalog, default_catalog, load_catalog
from app.request_ids import request_id_middleware
from app.settings import Settings
from app.system.health import HealthController
from app.system.plans import PlanController
from app.web.controllers import BillingPageController, BillingSessionController
from app.worker import create_queue, create_worker

log = structlog.get_logger("tollgate")


def load_plans(settings: Settings) -> Catalog:
    if settings.plans_file is not None:
        return load_catalog(settings.plans_file.read_text())
    return default_catalog()


def create_engine(settings: Settings) -> AsyncEngine:
    url = settings.database_url
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30}, echo=settings.db.echo)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(conn: Any, _record: Any) -> None:
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_async_engine(
        url, pool_size=settings.db.pool_size, pool_pre_ping=True, echo=settings.db.echo
    )


# ---------------------------------------------------------------------------- errors
def _error(
    status: int, code: str, detail: Any, headers: dict[str, str] | None = None, **extra: Any
) -> Response[dict[str, Any]]:
    return Response({"error": code, "detail": detail, **extra}, status_code=status, headers=headers or {})


def handle_tollgate_error(_: Request, exc: TollgateError) -> Response[dict[str, Any]]:  # type: ignore[type-arg]
    return _error(exc.status_code, exc.code, exc.detail, exc.headers)


def handle_validation(_: Request, exc: ValidationException) -> Response[dict[str, Any]]:  # type: ignore[type-arg]
    return _error(exc.status_code, "validation_error", exc.detail, fields=exc.extra or [])


def handle_http(_: Request, exc: HTTPException) -> Response[dict[str, Any]]:  # type: ignore[type-arg]
    code = {
        401: "unauthorized",
        403: "forbidden",
        404: "not_found",
        405: "method_not_allowed",
        413: "payload_too_large",
        415: "unsupported_media_type",
    }.get(exc.status_code, "http_error")
    return _error(exc.status_code, code, exc.detail, exc.headers or None)


def handle_redis(_: Request, exc: RedisError) -> Response[dict[str, Any]]:  # type: ignore[type-arg]
    log.warning("redis.unavailable", error=type(exc).__name__)
    return _error(
        503,
        "redis_unavailable",
        "The quota store is unreachable; try again shortly.",
        {"Retry-After": "1"},
    )


def handle_unexpected(request: Request, exc: Exception) -> Response[dict[str, Any]]:  # type: ignore[type-arg]
    log.exception("request.failed", path=request.url.path, error=type(exc).__name__)
    return _error(500, "internal_error", "Something went wrong on our side; it has been logged.")


# ---------------------------------------------------------------------------- background
async def _background_loop(ctx: AppContext, flusher: UsageFlusher) -> None:
    """Flush touched counters to the database and retry failed config pushes."""
    interval = ctx.settings.meter.flush_interval
    while True:
        await asyncio.sleep(interval)
        await flush_once(ctx, flusher)


async def flush_once(ctx: AppContext, flusher: UsageFlusher) -> None:
    touched, ctx.meter.touched = ctx.meter.touched, set()
    try:
        await ctx.meter.flush_refusals()
        await flusher.flush(touched)
        await usage_flushed(ctx, touched)  # snapshots + notifications; never raises
    except Exception as exc:
        ctx.meter.touched |= touched
        log.warning("usage.flush_failed", error=type(exc).__name__, orgs=len(touched))
    if ctx.pending_publish:
        for org_id in list(ctx.pending_publish):
            with contextlib.suppress(RedisError, OSError):
                await ctx.meter.invalidate(org_id)
                ctx.pending_publish.discard(org_id)


async def _supervise(worker: Any) -> None:
    """Run the embedded job worker; if Redis is down, keep retrying (the service heals itself)."""
    delay = 0.5
    while True:
        try:
            await worker.queue.connect()
            await worker.start()
            return
        except (RedisError, OSError) as exc:
            log.warning("worker.redis_unavailable", error=type(exc).__name__, retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


# ---------------------------------------------------------------------------- app
def create_app(settings: Settings | None = None, *, clock: Clock | None = None) -> Litestar:
    settings = settings or Settings()
    clock = clock or Clock()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncGenerator[None, None]:
        configure_logging(settings.log_level, settings.log_json)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        embedded: EmbeddedRedis | None = None
        redis_url = settings.redis.url
        if settings.embedded_redis:
            embedded = await asyncio.to_thread(
                EmbeddedRedis(settings.data_dir / "redis", settings.redis.embedded_port).start
            )
            redis_url = embedded.url
            log.info("redis.embedded_started", url=redis_url)
        engine = create_engine(settings)
        if not settings.db.url or settings.db.auto_migrate:
            await upgrade_async(settings.database_url)
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        redis = create_redis(settings, redis_url)
        catalog = load_plans(settings)
        source = DatabaseConfigSource(sessions, catalog, settings.meter, clock)
        meter = Meter(redis, source, settings.meter, clock)
        ctx = AppContext(
            settings=settings,
            catalog=catalog,
            clock=clock,
            sessions=sessions,
            redis=redis,
            meter=meter,
            auth=Authenticator(settings, sessions),
        )
        app.state.ctx = ctx
        app.state.quotas = QuotaService(meter, settings.meter)
        flusher = UsageFlusher(redis, sessions)
        app.state.flusher = flusher
        loop_task = asyncio.create_task(_background_loop(ctx, flusher))
        ctx.queue = create_queue(settings, redis_url)
        worker = create_worker(ctx.queue, ctx, settings) if settings.worker.embedded else None
        worker_task = asyncio.create_task(_supervise(worker)) if worker is not None else None
        log.info(
            "tollgate.started",
            database=engine.url.render_as_string(hide_password=True),
            redis=redis_url,
        )
        # Everything built so far (app, routes, models, settings) lives as long as the process:
        # keep it out of the garbage collector's full passes, which otherwise re-scan it while
        # a busy batch keeps thousands of young objects alive (about a third of a batch's CPU).
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()  # collectable again (matters where one process runs many apps: tests)
            if worker is not None and worker_task is not None:
                with contextlib.suppress(Exception):
                    await worker.stop()
                worker_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker_task
            loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop_task
            with contextlib.suppress(Exception):
                await ctx.queue.disconnect()
            with contextlib.suppress(Exception):
                await flush_once(ctx, flusher)
            await redis.aclose()
            await engine.dispose()
            if embedded is not None:
                await asyncio.to_thread(embedded.stop)
            log.info("tollgate.stopped")

    app = Litestar(
        route_handlers=[
            HealthController,
            PlanController,
            OrganizationController,
            ServiceTokenController,
            QuotaController,
            UsageController,
            BillingController,
            StripeWebhookController,
            EntitlementController,
            EntitlementCheckController,
            HerokuResourceController,
            HerokuSsoController,
            MarketplaceAdminController,
            BillingPageController,
            BillingSessionController,
            WebhookEndpointController,
        ],
        dependencies=DEPENDENCIES,
        lifespan=[lifespan],
        middleware=[request_id_middleware],
        exception_handlers={
            TollgateError: handle_tollgate_error,
            ValidationException: handle_validation,
            HTTPException: handle_http,
            RedisError: handle_redis,
            Exception: handle_unexpected,
        },
        openapi_config=OpenAPIConfig(
            title="Tollgate",
            version="0.1.0",
            path="/schema",
            description="Billing and quota service: organizations, plans, a Redis quota meter.",
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(
                        type="http",
                        scheme="bearer",
                        description="Admin/ingest service token or org API key",
                    ),
                }
            ),
            security=[{"bearer": []}],
        ),
        debug=False,
    )
    install_fast_path(app)  # the ingest hot path answers ahead of the router
    return app
