"""Marketplace jobs: finish Heroku provisioning outside the request (grant exchange, config vars,
"provisioned" action), and a sweep that re-queues any resource whose job was lost."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import structlog
from saq import CronJob

from app.context import AppContext
from app.marketplace.credentials import load_secrets
from app.marketplace.heroku import PROVIDER, HerokuAddon, HerokuAddonService

log = structlog.get_logger(__name__)


def _addon(app: AppContext) -> HerokuAddon:
    return HerokuAddon(app.settings, load_secrets(app.settings), app.catalog.names())


async def heroku_complete_provision(ctx: dict[str, Any], *, resource_id: str) -> dict[str, Any]:
    """Exchange the OAuth grant; for async plans PATCH the config vars and mark provisioned."""
    app: AppContext = ctx["app"]
    async with app.sessions() as session:
        return await HerokuAddonService(session, app, _addon(app)).complete(UUID(resource_id))


async def heroku_sweep(ctx: dict[str, Any]) -> int:
    """Re-queue unfinished resources (a job lost with a Redis restart); SAQ keys dedupe the rest."""
    app: AppContext = ctx["app"]
    if not app.settings.marketplace.heroku.enabled:
        return 0
    async with app.sessions() as session:
        service = HerokuAddonService(session, app, _addon(app))
        pending = await service.core.pending(PROVIDER)
        for resource in pending:
            await service.enqueue(resource.id)
    return len(pending)


JOBS = [heroku_complete_provision, heroku_sweep]
CRON: list[CronJob] = [CronJob(heroku_sweep, cron="*/5 * * * *")]  # type: ignore[type-arg]
