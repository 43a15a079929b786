"""The daily usage chart, computed server-side as SVG geometry (pure, no I/O).

The database keeps period-to-date totals per day (``usage_daily``: the totals as of each day's
last flush). A day's usage is its total minus the previous recorded total; today's total comes from
the live counters, so the chart is current without waiting for a flush.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

WIDTH = 640
HEIGHT = 180
TOP = 18
BOTTOM = 22
LEFT = 4


@dataclass(frozen=True, slots=True)
class Bar:
    day: date
    value: int
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True, slots=True)
class Chart:
    bars: list[Bar]
    peak: int
    total: int
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def baseline(self) -> int:
        return HEIGHT - BOTTOM


def daily_values(totals: dict[date, int], first: date, last: date) -> list[tuple[date, int]]:
    """Per-day usage from period-to-date totals recorded on some days (missing days used nothing)."""
    out: list[tuple[date, int]] = []
    previous = 0
    day = first
    while day <= last:
        if day in totals:
            out.append((day, max(0, totals[day] - previous)))
            previous = totals[day]
        else:
            out.append((day, 0))
        day += timedelta(days=1)
    return out


def build(values: list[tuple[date, int]]) -> Chart:
    n = max(len(values), 1)
    peak = max((v for _, v in values), default=0)
    slot = (WIDTH - LEFT) / n
    gap = min(2.0, slot * 0.2)
    plot = HEIGHT - TOP - BOTTOM
    bars = []
    for i, (day, value) in enumerate(values):
        h = 0.0 if peak == 0 else max(1.0 if value else 0.0, plot * value / peak)
        bars.append(
            Bar(
                day=day,
                value=value,
                x=round(LEFT + i * slot + gap / 2, 2),
                y=round(HEIGHT - BOTTOM - h, 2),
                width=round(max(slot - gap, 1.0), 2),
                height=round(h, 2),
            )
        )
    return Chart(bars=bars, peak=peak, total=sum(v for _, v in values))
