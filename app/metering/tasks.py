"""Meter jobs: the periodic usage flush safety net."""

from __future__ import annotations

from typing import Any

from saq import CronJob

from app.metering.store import UsageFlusher


async def flush_usage(ctx: dict[str, Any], organization_ids: list[str] | None = None) -> int:
    """Flush counters of these orgs (or of every org this process touched) to the database."""
    app = ctx["app"]
    ids = set(organization_ids or ())
    if not ids:
        ids, app.meter.touched = app.meter.touched, set()
    return await UsageFlusher(app.redis, app.sessions).flush(ids)


JOBS = [flush_usage]
CRON: list[CronJob] = []  # type: ignore[type-arg]
