"""QuotaConfig: the contract between the control plane and the hot path.

The control plane computes one per organization from its plan and overrides (pure, see
:func:`app.plans.effective_limits`) and materializes it into Redis whenever it changes; the Lua
script reads only this. Like Sentry's ``QuotaConfig``, it checks its own invariants when built.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec

from app.db.models import Organization
from app.plans import (
    CATEGORIES,
    Catalog,
    EffectiveLimits,
    Overrides,
    PlanVersion,
    effective_limits,
)
from app.plans.periods import as_utc, current_period
from app.settings import MeterSettings

UNLIMITED = -1
DENYING_STATUSES = frozenset({"suspended", "deprovisioned"})
_ENCODE = msgspec.msgpack.Encoder().encode
_DECODE = msgspec.msgpack.Decoder().decode


class QuotaConfigInvalid(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class SpikeBucket:
    rate: float
    """Tokens per second."""
    capacity: float


@dataclass(frozen=True, slots=True)
class QuotaConfig:
    organization_id: str
    version: int
    suspended: bool
    period_start: int
    """Unix seconds, inclusive."""
    period_end: int
    """Unix seconds, exclusive."""
    limits: Mapping[str, int]
    """Allowance per category; ``-1`` is unlimited."""
    on_demand_cents: Mapping[str, float] = field(default_factory=dict)
    on_demand_budget_cents: int = 0
    spike: Mapping[str, SpikeBucket] = field(default_factory=dict)
    spike_paused_until: int = 0
    project_caps: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    plan: str = ""
    plan_version: int = 0
    features: frozenset[str] = frozenset()
    """Entitlements ride along so feature checks are answered from the same hash."""
    members: int = UNLIMITED
    retention_days: int = 0

    def __post_init__(self) -> None:
        if self.period_end <= self.period_start:
            raise QuotaConfigInvalid("period_end must be after period_start")
        if any(v < UNLIMITED for v in self.limits.values()):
            raise QuotaConfigInvalid("limits must be >= 0 or -1 (unlimited)")
        if self.on_demand_budget_cents < 0:
            raise QuotaConfigInvalid("on-demand budget must be >= 0")
        for cat, bucket in self.spike.items():
            if bucket.rate <= 0 or bucket.capacity <= 0 or cat not in self.limits:
                raise QuotaConfigInvalid(f"spike bucket for {cat!r} is not valid")
        for project, caps in self.project_caps.items():
            if ":" in project or any(v < 0 for v in caps.values()):
                raise QuotaConfigInvalid(f"project cap for {project!r} is not valid")

    def to_redis(self) -> bytes:
        """One MessagePack array, as the Lua scripts read it (``CONFIG_FIELDS`` order, documented
        in ``lua/consume.lua``): read with one GET, and a fraction of a hash's memory. Values per
        category are arrays aligned with the category list (no name repeated); no on-demand
        price is -1, no spike bucket is rate 0."""
        cats = list(self.limits)
        no_bucket = SpikeBucket(0.0, 0.0)
        return _ENCODE(
            [
                self.version,
                "suspended" if self.suspended else "active",
                self.period_start,
                self.period_end,
                self.on_demand_budget_cents,
                self.spike_paused_until,
                cats,
                [self.limits[c] for c in cats],
                [_compact(self.on_demand_cents.get(c, -1)) for c in cats],
                [_compact(self.spike.get(c, no_bucket).rate) for c in cats],
                [_compact(self.spike.get(c, no_bucket).capacity) for c in cats],
                {f"{p}:{c}": cap for p, caps in self.project_caps.items() for c, cap in caps.items()},
                self.plan,
                self.plan_version,
                ",".join(sorted(self.features)),
                self.members,
                self.retention_days,
            ]
        )


CONFIG_FIELDS = (
    *("v", "st", "ps", "pe", "odb", "sp", "c", "l", "odp", "sr", "sc", "pc"),
    *("plan", "pv", "f", "mem", "ret"),
)
"""The positions of ``QuotaConfig.to_redis``; ``read_config`` names them."""


def _compact(n: float) -> float:
    """Whole numbers as integers (1 to 5 bytes in MessagePack instead of 9)."""
    return int(n) if float(n).is_integer() else float(n)


_POSITION = {name: i for i, name in enumerate(CONFIG_FIELDS)}


def config_values(raw: bytes | None, *names: str) -> list[Any] | None:
    """Some top-level fields of a materialized config, as stored (``None`` if there is none):
    what a frequent reader that needs a few fields uses instead of :func:`read_config`."""
    if raw is None:
        return None
    values: list[Any] = _DECODE(raw)
    return [values[_POSITION[n]] for n in names]


def read_config(raw: bytes | None) -> dict[str, Any] | None:
    """The materialized config by field name (``None`` if there is none); per-category values
    as ``{category: value}`` (``odp``, ``sr``, ``sc`` only for the categories that have one)."""
    if raw is None:
        return None
    config = dict(zip(CONFIG_FIELDS, _DECODE(raw), strict=True))
    cats = config["c"]
    config["l"] = dict(zip(cats, config["l"], strict=True))
    config["odp"] = {c: p for c, p in zip(cats, config["odp"], strict=True) if p >= 0}
    config["sr"] = {c: r for c, r in zip(cats, config["sr"], strict=True) if r > 0}
    config["sc"] = {c: n for c, n in zip(cats, config["sc"], strict=True) if c in config["sr"]}
    return config


def _ts(value: datetime) -> int:
    return int(as_utc(value).timestamp())


def plan_key_parts(key: str) -> tuple[str, int | None]:
    """``"team@v2"`` -> ``("team", 2)`` (the inverse of ``PlanVersion.key``)."""
    name, sep, version = key.rpartition("@v")
    if not sep or not version.isdigit():
        return key, None
    return name, int(version)


def active_trial(org: Organization, catalog: Catalog, now: datetime | None = None) -> PlanVersion | None:
    """The plan version ``org`` is trying, if its trial applies at ``now``. Pure, given the row.

    A trial applies until ``trial_ends_at`` (``now=None`` trusts the columns: the trials job clears
    them on time) and only while the org is still on the plan it started from, so any plan change
    (a Checkout upgrade, the control plane) ends it at once, before the job records the end.
    """
    if not org.trial_plan or org.trial_ends_at is None:
        return None
    if now is not None and as_utc(now) >= as_utc(org.trial_ends_at):
        return None
    if org.trial_previous_plan != f"{org.plan}@v{org.plan_version}":
        return None
    name, version = plan_key_parts(org.trial_plan)
    return catalog.get(name, version) if name in catalog else None


def org_limits(org: Organization, catalog: Catalog, now: datetime | None = None) -> EffectiveLimits:
    """The single place an org's plan version is chosen: its plan, overrides and running trial."""
    plan = (
        catalog.get(org.plan, org.plan_version)
        if org.plan in catalog
        else catalog.current(catalog.default_plan)
    )
    return effective_limits(
        plan,
        Overrides.from_dict(org.overrides),
        on_demand_budget_cents=org.on_demand_budget_cents,
        spike_protection=org.spike_protection,
        trial=active_trial(org, catalog, now),
    )


def org_period(org: Organization, now: datetime) -> tuple[datetime, datetime]:
    sub = None
    if org.subscription_period_start is not None and org.subscription_period_end is not None:
        sub = (org.subscription_period_start, org.subscription_period_end)
    return current_period(org.period_anchor, now, sub)


def build_quota_config(
    org: Organization, catalog: Catalog, now: datetime, meter: MeterSettings
) -> QuotaConfig:
    """Everything the meter needs about ``org`` at ``now``."""
    limits = org_limits(org, catalog, now)
    start, end = org_period(org, now)
    period_seconds = max(1.0, (end - start).total_seconds())
    quotas = {c: (UNLIMITED if limits.quota(c) is None else int(limits.quota(c) or 0)) for c in CATEGORIES}
    spike: dict[str, SpikeBucket] = {}
    if limits.spike_protection:
        for cat, quota in quotas.items():
            if quota > 0:
                spike[cat] = SpikeBucket(
                    rate=quota * meter.spike_rate_multiplier / period_seconds,
                    capacity=max(1.0, math.ceil(quota * meter.spike_burst_fraction)),
                )
    caps: dict[str, dict[str, int]] = {
        str(p): {c: int(v) for c, v in cats.items() if c in quotas}
        for p, cats in (org.project_caps or {}).items()
    }
    paused = _ts(org.spike_paused_until) if org.spike_paused_until else 0
    return QuotaConfig(
        organization_id=str(org.id),
        version=org.config_version,
        suspended=org.status in DENYING_STATUSES,
        period_start=_ts(start),
        period_end=_ts(end),
        limits=quotas,
        on_demand_cents={c: p for c, p in limits.on_demand_cents.items() if c in quotas},
        on_demand_budget_cents=limits.on_demand_budget_cents,
        spike=spike,
        spike_paused_until=paused,
        project_caps=caps,
        plan=limits.plan,
        plan_version=limits.version,
        features=limits.features,
        members=UNLIMITED if limits.members is None else limits.members,
        retention_days=limits.retention_days,
    )
