"""The meter's durable side: loading an org's config on a miss, and flushing counters.

Counters are flushed as *absolute* values per (org, category, period), so a flush is idempotent and
may run anywhere, any number of times. If Redis loses its data, the next call for an org misses its
config, and loading it seeds the counters back from the ``usage`` table first: what is lost is at
most what was counted since that org's last flush (``meter.flush_interval``), plus AOF's one second.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.clock import Clock
from app.db.models import Organization, Usage
from app.db.upsert import upsert
from app.metering import keys
from app.metering.config import QuotaConfig, build_quota_config
from app.plans import Catalog
from app.settings import MeterSettings

log = structlog.get_logger(__name__)


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError):
        return None


class DatabaseConfigSource:
    """Builds an org's QuotaConfig from the database (only on a miss or a period rollover)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        catalog: Catalog,
        settings: MeterSettings,
        clock: Clock,
    ) -> None:
        self.sessions = sessions
        self.catalog = catalog
        self.settings = settings
        self.clock = clock

    async def load(self, organization_id: str) -> tuple[QuotaConfig, dict[str, int]] | None:
        org_id = _uuid(organization_id)
        if org_id is None:
            return None
        async with self.sessions() as session:
            org = await session.get(Organization, org_id)
            if org is None:
                return None
            config = build_quota_config(org, self.catalog, self.clock.now(), self.settings)
            start = datetime.fromtimestamp(config.period_start, UTC)
            rows = (
                await session.scalars(
                    select(Usage).where(Usage.organization_id == org_id, Usage.period_start == start)
                )
            ).all()
        p = config.period_start
        seed: dict[str, int] = {}
        for row in rows:
            seed[f"{p}:u:{row.category}"] = row.used
            seed[f"{p}:o:{row.category}"] = row.on_demand_used
            for reason, n in (row.refused or {}).items():
                seed[f"{p}:x:{row.category}:{reason}"] = int(n)
        return config, seed


def parse_counters(fields: dict[str, str]) -> dict[tuple[str, int], dict[str, Any]]:
    """``{(category, period_start): {used, on_demand_used, refunded, refused{}, period_end}}``."""
    ends = {int(k.split(":")[0]): int(v) for k, v in fields.items() if k.endswith(":e")}
    out: dict[tuple[str, int], dict[str, Any]] = defaultdict(
        lambda: {"used": 0, "on_demand_used": 0, "refunded": 0, "refused": {}}
    )
    for name, value in fields.items():
        parts = name.split(":")
        if len(parts) < 3 or not parts[0].isdigit():
            continue
        period, kind, cat = int(parts[0]), parts[1], parts[2]
        if kind == "u":
            out[(cat, period)]["used"] = int(value)
        elif kind == "o":
            out[(cat, period)]["on_demand_used"] = int(value)
        elif kind == "r":
            out[(cat, period)]["refunded"] = int(value)
        elif kind == "x" and len(parts) == 4:
            out[(cat, period)]["refused"][parts[3]] = int(value)
        else:
            continue
        out[(cat, period)]["period_end"] = ends.get(period)
    return dict(out)


class UsageFlusher:
    """Copies counters from Redis to the ``usage`` table (absolute values, idempotent)."""

    def __init__(self, redis: Any, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.redis = redis
        self.sessions = sessions

    async def flush(self, organization_ids: set[str]) -> int:
        """Flush these orgs; returns the number of rows written."""
        ids = sorted(organization_ids)
        if not ids:
            return 0
        pipe = self.redis.pipeline(transaction=False)
        for org in ids:
            pipe.hgetall(keys.usage_key(org))
        raws = await pipe.execute()
        rows: list[dict[str, Any]] = []
        now = datetime.now(UTC)
        for org, raw in zip(ids, raws, strict=True):
            org_id = _uuid(org)
            if org_id is None or not raw:
                continue
            fields = {k.decode(): v.decode() for k, v in raw.items()}
            for (cat, period), c in parse_counters(fields).items():
                if c.get("period_end") is None:
                    continue
                rows.append(
                    {
                        "id": uuid.uuid4(),
                        "organization_id": org_id,
                        "category": cat,
                        "period_start": datetime.fromtimestamp(period, UTC),
                        "period_end": datetime.fromtimestamp(c["period_end"], UTC),
                        "used": c["used"],
                        "on_demand_used": c["on_demand_used"],
                        "refused": c["refused"],
                        "created_at": now,
                        "updated_at": now,
                    }
                )
        if rows:
            async with self.sessions() as session:
                await upsert(
                    session,
                    Usage,
                    rows,
                    conflict=["organization_id", "category", "period_start"],
                    update=["used", "on_demand_used", "refused", "updated_at", "period_end"],
                )
                await session.commit()
        return len(rows)
