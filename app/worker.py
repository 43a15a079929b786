"""Background jobs on SAQ (a Redis-backed job queue): retries with backoff, cron, job keys.

Each domain lists its jobs in ``app/<domain>/tasks.py`` as ``JOBS`` (async functions
``fn(ctx, **kwargs)``; ``ctx["app"]`` is the :class:`AppContext`) and optionally ``CRON``
(``saq.CronJob`` objects). On embedded defaults the worker runs inside the API process; in
production run ``tollgate worker`` (see docker/compose.yaml) and set ``TOLLGATE_WORKER__EMBEDDED=false``
on the API.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import structlog
from saq import CronJob, Queue, Worker
from saq.types import PartialTimersDict

from app.settings import Settings

log = structlog.get_logger(__name__)

TASK_MODULES: list[str] = [
    "app.metering.tasks",
    "app.billing.tasks",
    "app.entitlements.tasks",
    "app.marketplace.tasks",
    "app.notifications.tasks",
]
"""Modules whose ``JOBS`` / ``CRON`` the worker runs. Add a domain's ``tasks`` module here."""


def collect() -> tuple[list[Callable[..., Any]], list[CronJob]]:  # type: ignore[type-arg]
    functions: list[Callable[..., Any]] = []
    cron: list[CronJob] = []  # type: ignore[type-arg]
    for name in TASK_MODULES:
        module = importlib.import_module(name)
        functions += list(getattr(module, "JOBS", []))
        cron += list(getattr(module, "CRON", []))
    return functions, cron


def create_queue(settings: Settings, redis_url: str) -> Queue:
    return Queue.from_url(settings.worker.redis_url or redis_url, name=settings.worker.queue)


class EmbeddedWorker(Worker):  # type: ignore[type-arg]
    """A worker inside the API process: the server owns SIGINT/SIGTERM, not the worker."""

    SIGNALS: list[Any] = []


def create_worker(queue: Queue, app_context: Any, settings: Settings, *, embedded: bool = True) -> Worker:  # type: ignore[type-arg]
    functions, cron = collect()
    cls = EmbeddedWorker if embedded else Worker

    async def startup(ctx: dict[str, Any]) -> None:
        ctx["app"] = app_context

    timers: PartialTimersDict = {"schedule": 1, "sweep": 10, "abort": 1, "worker_info": 10}
    return cls(
        queue,
        functions=functions,
        cron_jobs=cron,
        startup=startup,
        concurrency=settings.worker.concurrency,
        timers=timers,
        dequeue_timeout=1.0,
    )
