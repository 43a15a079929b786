"""``Retry-After`` and ``X-Sentry-Rate-Limits`` exactly as Sentry's SDKs parse them.

Grammar (develop.sentry.dev, rate limiting): ``retry_after:categories:scope:reason_code`` entries
joined by ``", "``; categories ``;``-separated, empty meaning all; seconds rounded up. Relay caps the
retry (``max_rate_limit``, 300 s) so SDKs keep probing and an upgrade is noticed at once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from app.metering.results import Decision, Exhausted

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
    """The headers of an answer to ``decisions`` (one request's, or a whole batch's), in one pass:
    ``rate_limit_entries`` and the longest denied retry together, the same retry capped once."""
    limits: dict[tuple[str, str], int] = {}
    capped: dict[float, int] = {}
    seen: dict[int, list[Exhausted]] = {}
    """``exhausted`` lists already counted, by id (the requests of one script call share theirs)."""
    retry_after = 0
    degraded = False
    for d in decisions:
        if d.degraded:
            degraded = True
        for i in d.items:
            if i.accepted:
                continue
            retry = capped.get(i.retry_after)
            if retry is None:
                retry = capped[i.retry_after] = cap_retry(i.retry_after, cap)
            if retry > retry_after:
                retry_after = retry
            if i.reason:
                key = (ALL if i.reason == "suspended" else i.category, i.reason)
                if retry > limits.get(key, 0):
                    limits[key] = retry
        exhausted = d.exhausted
        if exhausted and id(exhausted) not in seen:
            seen[id(exhausted)] = exhausted  # held, so the id stays this list's
            for e in exhausted:
                retry = capped.get(e.retry_after)
                if retry is None:
                    retry = capped[e.retry_after] = cap_retry(e.retry_after, cap)
                key = (ALL if e.reason == "suspended" else e.category, e.reason)
                if retry > limits.get(key, 0):
                    limits[key] = retry
    headers: dict[str, str] = {}
    if limits:
        headers["X-Sentry-Rate-Limits"] = format_rate_limits(limits)
    if retry_after:
        headers["Retry-After"] = str(retry_after)
    if degraded:
        headers["X-Tollgate-Degraded"] = "redis-unavailable"
    return headers
