"""Redis key layout. Every key of one org carries the org id as a Redis Cluster hash tag, so a
single script call can touch all of them on one slot."""

from __future__ import annotations

PREFIX = "tg"


def config_key(org: str) -> str:
    """String: the org's materialized quota configuration, MessagePack (``QuotaConfig.to_redis``).

    (Until 2026-11 this was the hash ``tg:{org}:cfg``; such keys are no longer read and expire.)
    """
    return f"{PREFIX}:{{{org}}}:qc"


def usage_key(org: str) -> str:
    """Hash: counters, period-prefixed (``<period_start>:u:<category>``), spike buckets, leases."""
    return f"{PREFIX}:{{{org}}}:u"


def idempotency_key(org: str, key: str) -> str:
    return f"{PREFIX}:{{{org}}}:idem:{key}"
