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
    max_in_flight: int = Field(default=256, ge=1)
    """Quota requests one process serves at once; beyond that it answers 503 + Retry-After at once
    (load shedding: excess load gets a clear refusal instead of queueing into Redis timeouts). At
    ~2,500 requests/s per process, 256 in flight is ~100 ms of queue, below redis.socket_timeout."""


class WorkerSettings(BaseModel):
    embedded: bool = True
    """Run the job worker inside the API process (embedded default). Set false when running
    ``tollgate worker`` separately."""
    redis_url: str = ""
    """Queue Redis; empty means the main Redis (use a single-node Redis when the meter's is a
    cluster)."""
    queue: str = "tollgate"
    concurrency: int = 10


class HerokuAddonSettings(BaseModel):
    """The Heroku add-on (partner API v3). Secrets left unset are generated once on first use and
    kept in ``<data_dir>/marketplace-secrets.json`` (mode 0600), so the manifest and the API agree."""

    enabled: bool = True
    """Serve the Heroku routes (404 / 403 when off)."""
    id: str = Field(default="tollgate", pattern=r"^[a-z0-9][a-z0-9-]*$")
    """The manifest slug: immutable, globally unique, the Basic-auth username."""
    name: str = "Tollgate"
    password: SecretStr | None = None
    """Basic-auth password (manifest ``api.password``)."""
    sso_salt: SecretStr | None = None
    """Shared SSO secret (manifest ``api.sso_salt``)."""
    oauth_client_secret: SecretStr | None = None
    """The Partner Portal OAuth client secret, sent when exchanging a provision's grant code."""
    token_key: SecretStr | None = None
    """Encrypts stored OAuth tokens and the add-on's config (Fernet key derived from it)."""
    config_vars_prefix: str = Field(default="TOLLGATE", pattern=r"^([A-Z][0-9A-Z_]*)?$")
    """Config var names are ``<prefix>_URL`` etc.; empty means ``id`` upper-cased, ``-`` as ``_``."""
    regions: list[str] = Field(default_factory=lambda: ["us", "eu"])
    """Manifest regions (``us``, ``eu``, ``virginia``, ``oregon``, ``frankfurt``, ``tokyo``,
    ``sydney``, ``dublin`` or ``*``); provisions in other regions are refused with 422."""
    plans: dict[str, str] = Field(
        default_factory=lambda: {"free": "free", "team": "team", "business": "business"}
    )
    """Heroku plan slug -> Tollgate plan name."""
    async_plans: set[str] = Field(default_factory=set)
    """Heroku plan slugs provisioned asynchronously (202, then the worker completes them)."""
    api_url: str = "https://api.heroku.com"
    """Heroku Platform API base (config vars and provision actions are sent here)."""
    oauth_token_url: str = "https://id.heroku.com/oauth/token"
    production_url: str = ""
    """Public base URL Heroku calls; empty means ``server.public_url``."""
    billing_url: str = "/billing/{org_id}"
    """Where SSO lands the user (``{org_id}`` is replaced)."""
    http_timeout: float = 10.0


class MarketplaceSettings(BaseModel):
    session_key: SecretStr | None = None
    """HMAC key of the customer session cookie set by marketplace SSO (generated if unset)."""
    session_ttl: int = 3600
    """Seconds an SSO session lasts."""
    sso_max_age: int = 300
    """Seconds an SSO timestamp stays valid (timestamps in the future are refused)."""
    heroku: HerokuAddonSettings = Field(default_factory=HerokuAddonSettings)


class StripeSettings(BaseModel):
    """Stripe billing (``TOLLGATE_STRIPE__*``). Without ``api_key`` checkout and portal answer 503;
    without a webhook secret the webhook endpoint refuses every delivery."""

    api_key: SecretStr | None = None
    webhook_secrets: list[SecretStr] = Field(default_factory=list)
    """Endpoint signing secrets (``whsec_...``); during a rotation list both, any one verifies."""
    webhook_tolerance: int = 300
    """Seconds a webhook signature timestamp stays acceptable (Stripe's default)."""
    api_base: str = ""
    """Stripe API base URL; empty is Stripe itself (tests point it at the fake server)."""
    max_network_retries: int = 2
    timeout: float = 20.0
    currency: str = "usd"
    success_url: str = ""
    """Checkout success redirect; empty means ``{server.public_url}/billing?checkout=success``."""
    cancel_url: str = ""
    """Checkout cancel redirect; empty means ``{server.public_url}/billing?checkout=canceled``."""
    portal_return_url: str = ""
    """Customer Portal return URL; empty means ``{server.public_url}/billing``."""
    grace_days: float = 7
    """Days a past_due subscription keeps its plan before ``dunning_action`` applies."""
    dunning_action: Literal["downgrade", "suspend"] = "downgrade"
    overage_meter_event: str = "tollgate_on_demand_cents"
    """Billing meter event name for on-demand spend (value in cents)."""
    event_retries: int = 8
    """Attempts of a webhook event's processing job (exponential backoff)."""
    event_retry_delay: float = 1.0
    """First retry delay in seconds; doubles each attempt (capped at 5 minutes)."""


class EntitlementSettings(BaseModel):
    """Features, seats and trials (``TOLLGATE_ENTITLEMENTS__*``)."""

    trial_days: int = Field(default=14, ge=1)
    """Length of a trial when the request names none."""
    trial_max_days: int = Field(default=90, ge=1)
    """Longest trial a request may ask for."""
    trial_expiry_lookahead: int = Field(default=3600, ge=0)
    """Seconds before a trial's end from which the trials job pins the org's materialized config to
    expire exactly at the end (so the meter reloads it on time even between job runs)."""
    seat_idempotency_ttl: int = Field(default=86_400, ge=1)
    """How long a seat change's idempotency key replays its first answer."""


class WebSettings(BaseModel):
    """The hosted billing page (``TOLLGATE_WEB__*``)."""

    link_ttl: int = Field(default=300, ge=10, le=86_400)
    """Seconds a billing-session link stays valid (it also works only once)."""
    session_ttl: int = Field(default=3600, ge=60, le=7 * 86_400)
    """Seconds the browser session opened by a billing-session link lasts."""
    marketplace_dashboards: dict[str, str] = Field(
        default_factory=lambda: {"heroku": "https://dashboard.heroku.com/apps"}
    )
    """Where marketplace-billed customers change plan, by provider (shown instead of Stripe buttons)."""


class NotificationSettings(BaseModel):
    """Outbound usage notifications, Standard Webhooks (``TOLLGATE_NOTIFICATIONS__*``)."""

    thresholds: list[int] = Field(default_factory=lambda: [80, 100])
    """Percentages of a category's allowance that fire ``usage.threshold`` once per period."""
    allow_private_urls: bool | None = None
    """Allow endpoint URLs on loopback/private addresses. ``None``: allowed unless ``env`` is
    ``production`` (SSRF guard)."""
    timeout: float = Field(default=10.0, gt=0)
    """Seconds one delivery attempt may take."""
    max_attempts: int = Field(default=12, ge=1)
    """Attempts per delivery before it is marked failed."""
    retry_delay: float = Field(default=5.0, gt=0)
    """First retry delay in seconds; doubles each attempt, capped at ``max_retry_delay``."""
    max_retry_delay: float = Field(default=3600.0, gt=0)
    disable_after: float = Field(default=5 * 86_400, gt=0)
    """Seconds an endpoint may fail continuously before it is disabled automatically."""
    grace_warning_hours: float = Field(default=48, ge=0)
    """``billing.grace_ending`` fires this long before a past-due grace period ends."""


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
    entitlements: EntitlementSettings = Field(default_factory=EntitlementSettings)
    marketplace: MarketplaceSettings = Field(default_factory=MarketplaceSettings)
    stripe: StripeSettings = Field(default_factory=StripeSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    notifications: NotificationSettings = Field(default_factory=NotificationSettings)

    @property
    def database_url(self) -> str:
        if self.db.url:
            return self.db.url
        return f"sqlite+aiosqlite:///{self.data_dir.resolve() / 'tollgate.db'}"

    @property
    def embedded_redis(self) -> bool:
        return not self.redis.url
