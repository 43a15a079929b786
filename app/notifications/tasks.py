"""Notification jobs: one delivery attempt (rescheduled with backoff by the service), and the
scheduled scans that turn the audit trail and dunning state into events."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from saq import CronJob

from app.context import AppContext
from app.notifications.services import AuditWatch, Deliverer, GraceWatch, sweep_deliveries


async def deliver_notification(ctx: dict[str, Any], *, delivery_id: str) -> str:
    """Send one attempt of one delivery; a failure schedules the next attempt itself."""
    app: AppContext = ctx["app"]
    async with app.sessions() as session:
        return await Deliverer(session, app).attempt(UUID(delivery_id))


async def scan_audit_trail(ctx: dict[str, Any]) -> int:
    """Plan, billing and marketplace changes written to the audit trail become notifications."""
    app: AppContext = ctx["app"]
    async with app.sessions() as session:
        return await AuditWatch(session, app).run()


async def warn_grace_ending(ctx: dict[str, Any]) -> int:
    app: AppContext = ctx["app"]
    async with app.sessions() as session:
        return await GraceWatch(session, app).run()


async def sweep_notification_deliveries(ctx: dict[str, Any]) -> int:
    """Queue due deliveries again (a lost enqueue, a restart)."""
    app: AppContext = ctx["app"]
    async with app.sessions() as session:
        return await sweep_deliveries(session, app)


JOBS = [deliver_notification, scan_audit_trail, warn_grace_ending, sweep_notification_deliveries]
CRON: list[CronJob] = [  # type: ignore[type-arg]
    CronJob(scan_audit_trail, cron="* * * * * */5", timeout=60),
    CronJob(sweep_notification_deliveries, cron="* * * * * */15", timeout=60),
    CronJob(warn_grace_ending, cron="*/5 * * * *", timeout=120),
]
