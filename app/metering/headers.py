"""``Retry-After`` and ``X-Sentry-Rate-Limits`` exactly as Sentry's SDKs parse them.

Grammar (develop.sentry.dev, rate limiting): ``retry_after:categories:scope:reason_code`` entries
joined by ``", "``; categories ``;``-separated, empty meaning all; seconds rounded up. Relay caps the
retry (``max_rate_limit``, 300 s) so SDKs keep probing and an upgrade is noticed at once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from app.metering.results import Decision

ALL = ""


def cap_retry(seconds: float, cap: int) -> int:
    if seconds != seconds or seconds <= 0:  # NaN, or nothing to wait for
        return 1
    return max(1, min(cap, math.ceil(seconds)))


def _scope(reason: str) -> str:
    return "project" if reason == "project_cap" else "organization"


def rate_limit_entries(decisions: Iterable[Decision], cap: int) -> dict[tuple[str, str], int]:
    """``{(category or ALL, reason): retry}`` for every refusal and every exhausted category,
    keeping the longest retry per category (as SDKs do)."""
    limits: dict[tuple[str, str], int] = {}
    for d in decisions:
        pairs = [(i.category, i.reason, i.retry_after) for i in d.items if not i.accepted and i.reason]
        pairs += [(e.category, e.reason, e.retry_after) for e in d.exhausted]
        for cat, reason, retry in pairs:
            key = (ALL if reason == "suspended" else cat, reason)
            limits[key] = max(limits.get(key, 0), cap_retry(retry, cap))
    return limits


def format_rate_limits(limits: dict[tuple[str, str], int]) -> str:
    groups: dict[tuple[int, str, str], list[str]] = {}
    for (cat, reason), retry in limits.items():
        groups.setdefault((retry, _scope(reason), reason), []).append(cat)
    entries = []
    for (retry, scope, reason), cats in sorted(groups.items(), key=lambda g: (-g[0][0], g[0][2])):
        categories = "" if ALL in cats else ";".join(sorted(cats))
        entries.append(f"{retry}:{categories}:{scope}:{reason}")
    return ", ".join(entries)


def quota_headers(decisions: Iterable[Decision], cap: int) -> dict[str, str]:
    decisions = list(decisions)
    if not any(d.exhausted or d.degraded or not d.all_accepted for d in decisions):
        return {}  # the common answer (all accepted, nothing exhausted): no header to build
    headers: dict[str, str] = {}
    limits = rate_limit_entries(decisions, cap)
    if limits:
        headers["X-Sentry-Rate-Limits"] = format_rate_limits(limits)
    denied = [cap_retry(i.retry_after, cap) for d in decisions for i in d.items if not i.accepted]
    if denied:
        headers["Retry-After"] = str(max(denied))
    if any(d.degraded for d in decisions):
        headers["X-Tollgate-Degraded"] = "redis-unavailable"
    return headers
