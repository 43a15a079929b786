"""The Redis client for the whole process (single node or Redis Cluster)."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from app.settings import Settings

AnyRedis = Redis | RedisCluster


def create_redis(settings: Settings, url: str) -> Any:
    common: dict[str, Any] = {
        "socket_timeout": settings.redis.socket_timeout,
        "socket_connect_timeout": settings.redis.socket_timeout,
        "decode_responses": False,
    }
    if settings.redis.cluster:
        return RedisCluster.from_url(url, max_connections=128, **common)
    return Redis.from_url(url, health_check_interval=10, max_connections=256, **common)
