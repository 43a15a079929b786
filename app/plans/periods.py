"""Billing periods, as pure date arithmetic.

Free organizations follow a monthly period anchored on their creation day (clamped to the month's
length: an org created on the 31st renews on the 30th in April and the 28th/29th in February).
Paid organizations follow their subscription's current period while it is known; past its end (a
renewal webhook not yet seen) the period rolls monthly from that end, so the meter never stalls.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime


def _add_months(anchor: datetime, months: int) -> datetime:
    month0 = anchor.month - 1 + months
    year = anchor.year + month0 // 12
    month = month0 % 12 + 1
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    return anchor.replace(year=year, month=month, day=day)


def monthly_period(anchor: datetime, now: datetime) -> tuple[datetime, datetime]:
    """The monthly period anchored at ``anchor`` that contains ``now`` (start inclusive)."""
    anchor = as_utc(anchor)
    now = as_utc(now)
    months = (now.year - anchor.year) * 12 + (now.month - anchor.month)
    start = _add_months(anchor, months)
    if start > now:
        months -= 1
        start = _add_months(anchor, months)
    end = _add_months(anchor, months + 1)
    if end <= now:  # clamping can leave a gap of a day at month ends
        start, end = end, _add_months(anchor, months + 2)
    return start, end


def current_period(
    anchor: datetime,
    now: datetime,
    subscription_period: tuple[datetime, datetime] | None = None,
) -> tuple[datetime, datetime]:
    """The org's period now: the subscription's when it covers ``now``, else a monthly roll."""
    if subscription_period is not None:
        start, end = (as_utc(subscription_period[0]), as_utc(subscription_period[1]))
        now = as_utc(now)
        if start <= now < end:
            return start, end
        if now >= end:
            return monthly_period(end, now)
    return monthly_period(anchor, now)


def as_utc(value: datetime) -> datetime:
    """Naive datetimes (SQLite) are UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
