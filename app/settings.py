"""Configuration: one pydantic-settings class, nested groups, ``TOLLGATE_`` prefix.

Every value can be set from the environment (``TOLLGATE_DB__URL``, ``TOLLGATE_REDIS__URL``, ...) or
from a ``.env`` file. The defaults are the *embedded* shape: a SQLite file and a private Redis server
under ``./data`` that the service starts itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServerSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str = "http://127.0.0.1:8000"
    """The URL customers and ingest services use to reach this deployment."""
    workers: int = 1


class DatabaseSettings(BaseModel):
    url: str = ""
    """SQLAlchemy async URL. Empty means ``sqlite+aiosqlite:///<data_dir>/tollgate.db``."""
    echo: bool = False
    pool_size: int = 10
    auto_migrate: bool = False
    """Run ``alembic upgrade heads`` at start-up (always on for the embedded SQLite default)."""


class RedisSettings(BaseModel):
    url: str = ""
    """``redis://host:port/0``. Empty means: start a private redis-server under ``data_dir``."""
    cluster: bool = False
    """Treat ``url`` as a Redis Cluster entry node."""
    socket_timeout: float = 0.25
    """Seconds before a Redis call counts as failed (the meter then applies ``meter.fail_policy``)."""
    embedded_port: int = 0
    """Port of the embedded server; 0 picks a free one."""


class MeterSettings(BaseModel):
    max_retry_after: int = 300
    """Cap on Retry-After (seconds), as Relay's ``max_rate_limit``: SDKs keep probing."""
    counter_grace: int = 86_400
    """Seconds counters live past their period end (late refunds, flush)."""
    fail_policy: Literal["open", "closed"] = "closed"
    """What ``consume`` answers when Redis is unreachable. Either way the response says ``degraded``."""
    idempotency_ttl: int = 86_400
    """How long a consume's idempotency key replays its first decision."""
    flush_interval: float = 5.0
    """Seconds between usage flushes from Redis to the ``usage`` table (bound on loss if Redis dies)."""
    spike_rate_multiplier: float = 3.0
    """Spike protection refills at this multiple of an even spend of the allowance over the period
    (Sentry's floor is 3x the even hourly rate)."""
    spike_burst_fraction: float = 0.1
    """Spike bucket capacity as a fraction of the period's allowance (a burst that large passes)."""
    denial_cache_seconds: float = 1.0
    """How long an API process answers a known exhaustion locally (0 disables)."""
    max_quantity: int = 1_000_000_000
    """Largest quantity one item may ask for (bytes for attachments)."""
    max_items: int = 1000


class WorkerSettings(BaseModel):
    embedded: bool = True
    """Run the job worker inside the API process (embedded default). Set false when running
    ``tollgate worker`` separately."""
    redis_url: str = ""
    """Queue Redis; empty means the main Redis (use a single-node Redis when the meter's is a
    cluster)."""
    queue: str = "tollgate"
    concurrency: int = 10


class Settings(BaseSettings):
    """Tollgate's whole configuration. Build one per process (or per test); nothing reads env later."""

    model_config = SettingsConfigDict(
        env_prefix="TOLLGATE_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    env: Literal["development", "production", "test"] = "development"
    data_dir: Path = Path("data")
    log_level: str = "INFO"
    log_json: bool = True
    admin_token: SecretStr | None = None
    """Bootstrap admin token: ``TOLLGATE_ADMIN_TOKEN``."""
    plans_file: Path | None = None
    """Optional JSON file with the plan catalog; the built-in catalog is used otherwise."""

    server: ServerSettings = Field(default_factory=ServerSettings)
    db: DatabaseSettings = Field(default_factory=DatabaseSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    meter: MeterSettings = Field(default_factory=MeterSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)

    @property
    def database_url(self) -> str:
        if self.db.url:
            return self.db.url
        return f"sqlite+aiosqlite:///{self.data_dir.resolve() / 'tollgate.db'}"

    @property
    def embedded_redis(self) -> bool:
        return not self.redis.url
