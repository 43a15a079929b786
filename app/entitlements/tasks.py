"""Trial jobs: end due trials on time (every second), from the database, across restarts."""

from __future__ import annotations

from typing import Any

from saq import CronJob

from app.entitlements.services import TrialService


async def end_due_trials(ctx: dict[str, Any]) -> int:
    """End trials that are due or voided by a plan change; returns how many were ended."""
    app = ctx["app"]
    async with app.sessions() as session:
        return await TrialService(session, app).sweep()


JOBS = [end_due_trials]
CRON: list[CronJob] = [CronJob(end_due_trials, cron="* * * * * *", timeout=30)]  # type: ignore[type-arg]
"""Every second (croniter's sixth field is seconds); SAQ keys cron jobs, so one runs at a time."""
