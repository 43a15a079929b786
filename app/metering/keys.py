"""Redis key layout. Every key of one org carries the org id as a Redis Cluster hash tag, so a
single script call can touch all of them on one slot."""

from __future__ import annotations

PREFIX = "tg"


def config_key(org: str) -> str:
    """Hash: the org's materialized quota configuration (see ``QuotaConfig.to_redis``)."""
    return f"{PREFIX}:{{{org}}}:cfg"


def usage_key(org: str) -> str:
    """Hash: counters, period-prefixed (``<period_start>:u:<category>``), spike buckets, leases."""
    return f"{PREFIX}:{{{org}}}:u"


def idempotency_key(org: str, key: str) -> str:
    return f"{PREFIX}:{{{org}}}:idem:{key}"
