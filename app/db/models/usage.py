"""Usage per (organization, category, period): the durable copy of the meter's counters.

Rows hold *absolute* values as last read from Redis, so a flush is idempotent and a lost Redis is
rebuilt from here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from advanced_alchemy.base import UUIDv7AuditBase
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import BigInteger, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db.types import JSONDict


class Usage(UUIDv7AuditBase):
    __tablename__ = "usage"
    __table_args__ = (UniqueConstraint("organization_id", "category", "period_start"),)

    organization_id: Mapped[UUID] = mapped_column(
        ForeignKey("organization.id", ondelete="CASCADE"), index=True
    )
    category: Mapped[str] = mapped_column(String(40))
    period_start: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    period_end: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    used: Mapped[int] = mapped_column(BigInteger, default=0)
    """Units accepted in the period, allowance and on-demand together (net of refunds)."""
    on_demand_used: Mapped[int] = mapped_column(BigInteger, default=0)
    refused: Mapped[dict[str, Any]] = mapped_column(JSONDict, default=dict)
    """Refused units by reason."""
