"""Daily snapshots of period-to-date usage, for the billing page's chart.

The ``usage`` table holds one running total per period; this table keeps, per org, category,
period and UTC day, the period-to-date totals as of that day's last flush. A day's usage is the
difference between its snapshot and the previous one.
"""

from __future__ import annotations

from datetime import date, datetime
from uuid import UUID

from advanced_alchemy.base import UUIDv7AuditBase
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import BigInteger, Date, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column


class UsageDaily(UUIDv7AuditBase):
    __tablename__ = "usage_daily"
    __table_args__ = (UniqueConstraint("organization_id", "category", "period_start", "day"),)

    organization_id: Mapped[UUID] = mapped_column(
        ForeignKey("organization.id", ondelete="CASCADE"), index=True
    )
    category: Mapped[str] = mapped_column(String(40))
    period_start: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    day: Mapped[date] = mapped_column(Date)
    used: Mapped[int] = mapped_column(BigInteger, default=0)
    """Period-to-date units accepted (allowance and on-demand) as of the day's last flush."""
    on_demand_used: Mapped[int] = mapped_column(BigInteger, default=0)
