"""Billing jobs: webhook event processing (retried with backoff), and the scheduled sweeps."""

from __future__ import annotations

from typing import Any

from saq import CronJob

from app.billing.services import BillingScheduler, EventProcessor, OverageService
from app.context import AppContext


async def process_stripe_event(ctx: dict[str, Any], *, event_id: str) -> str:
    """Apply one stored Stripe event. Raises on failure so SAQ retries it with backoff."""
    app: AppContext = ctx["app"]
    async with app.sessions() as session:
        return await EventProcessor(session, app).process(event_id)


async def sweep_stripe_events(ctx: dict[str, Any]) -> int:
    """Queue stored events that were never processed (a lost enqueue, exhausted retries)."""
    app: AppContext = ctx["app"]
    async with app.sessions() as session:
        return await BillingScheduler(session, app).sweep_events()


async def enforce_dunning(ctx: dict[str, Any]) -> int:
    """Downgrade (or suspend) orgs whose past-due grace period is over."""
    app: AppContext = ctx["app"]
    async with app.sessions() as session:
        return await BillingScheduler(session, app).enforce_dunning()


async def end_canceled_subscriptions(ctx: dict[str, Any]) -> int:
    """Drop orgs to free whose subscription was set to cancel and whose period has ended."""
    app: AppContext = ctx["app"]
    async with app.sessions() as session:
        return await BillingScheduler(session, app).end_canceled_periods()


async def report_overage(ctx: dict[str, Any]) -> int:
    """Report on-demand spend not yet reported to Stripe's billing meter."""
    app: AppContext = ctx["app"]
    async with app.sessions() as session:
        return await OverageService(session, app).report()


JOBS = [
    process_stripe_event,
    sweep_stripe_events,
    enforce_dunning,
    end_canceled_subscriptions,
    report_overage,
]
CRON: list[CronJob] = [  # type: ignore[type-arg]
    CronJob(sweep_stripe_events, cron="* * * * *", timeout=300),
    CronJob(enforce_dunning, cron="*/5 * * * *", timeout=300),
    CronJob(end_canceled_subscriptions, cron="*/5 * * * *", timeout=300),
    CronJob(report_overage, cron="*/10 * * * *", timeout=600),
]
