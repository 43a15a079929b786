"""The plan catalog: tiers, their versions, quotas, prices, entitlements.

Values are configuration, not code: :func:`default_catalog` mirrors the product Tollgate is modelled
on, and :func:`load_catalog` reads the same shape from JSON. Plans are *versioned*: an organization
keeps the version it bought (grandfathering) until it changes plan.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

CATEGORIES: tuple[str, ...] = ("error", "transaction", "replay", "attachment")
"""Event categories the meter counts. ``attachment`` is counted in bytes, the others in events."""

UNITS: Mapping[str, str] = {
    "error": "event",
    "transaction": "event",
    "replay": "event",
    "attachment": "byte",
}

FEATURES: tuple[str, ...] = (
    "integrations",
    "advanced_analytics",
    "custom_dashboards",
    "cross_project_issues",
    "sso",
    "compliance",
)

GB = 1_000_000_000


class CatalogError(ValueError):
    """The catalog configuration breaks one of its invariants."""


@dataclass(frozen=True, slots=True)
class PlanVersion:
    """One version of one plan. Checks its own invariants when built."""

    name: str
    version: int
    title: str
    monthly_price_cents: int | None
    """``None`` means priced per contract (enterprise)."""
    quotas: Mapping[str, int | None]
    """Monthly allowance per category; ``None`` means unlimited (or per contract)."""
    annual_price_cents: int | None = None
    on_demand_cents: Mapping[str, float] = field(default_factory=dict)
    """Price of one unit beyond the allowance, in cents; a category absent here has no on-demand."""
    retention_days: int = 30
    members: int | None = None
    """Seat limit; ``None`` is unlimited."""
    features: frozenset[str] = frozenset()
    self_serve: bool = True
    """Can be bought through Checkout (enterprise cannot)."""
    hard_stop: bool = False
    """No on-demand spend at all: the allowance is the ceiling (free plans)."""
    spike_protection: bool = True
    """Spike protection default for orgs on this plan."""

    def __post_init__(self) -> None:
        if not self.name or self.version < 1:
            raise CatalogError(f"plan {self.name!r}: needs a name and a version >= 1")
        unknown = set(self.quotas) - set(CATEGORIES)
        if unknown:
            raise CatalogError(f"plan {self.name!r}: unknown categories {sorted(unknown)}")
        if any(v is not None and v < 0 for v in self.quotas.values()):
            raise CatalogError(f"plan {self.name!r}: quotas must be >= 0")
        if any(p < 0 for p in self.on_demand_cents.values()):
            raise CatalogError(f"plan {self.name!r}: on-demand prices must be >= 0")
        bad = set(self.features) - set(FEATURES)
        if bad:
            raise CatalogError(f"plan {self.name!r}: unknown features {sorted(bad)}")
        if self.self_serve and self.monthly_price_cents is None:
            raise CatalogError(f"plan {self.name!r}: a self-serve plan needs a price")

    @property
    def key(self) -> str:
        return f"{self.name}@v{self.version}"

    def quota(self, category: str) -> int | None:
        return self.quotas.get(category, 0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "title": self.title,
            "monthly_price_cents": self.monthly_price_cents,
            "annual_price_cents": self.annual_price_cents,
            "quotas": {c: self.quota(c) for c in CATEGORIES},
            "units": dict(UNITS),
            "on_demand_cents": dict(self.on_demand_cents),
            "retention_days": self.retention_days,
            "members": self.members,
            "features": sorted(self.features),
            "self_serve": self.self_serve,
            "hard_stop": self.hard_stop,
            "spike_protection": self.spike_protection,
        }


@dataclass(frozen=True, slots=True)
class Catalog:
    """All plans, each with its versions (oldest first)."""

    plans: Mapping[str, tuple[PlanVersion, ...]]
    default_plan: str = "free"

    def __post_init__(self) -> None:
        if self.default_plan not in self.plans:
            raise CatalogError(f"default plan {self.default_plan!r} is not in the catalog")
        for name, versions in self.plans.items():
            if not versions:
                raise CatalogError(f"plan {name!r} has no versions")
            numbers = [v.version for v in versions]
            if numbers != sorted(set(numbers)) or any(v.name != name for v in versions):
                raise CatalogError(f"plan {name!r}: versions must be unique and ascending")

    def __contains__(self, name: object) -> bool:
        return name in self.plans

    def names(self) -> list[str]:
        return list(self.plans)

    def current(self, name: str) -> PlanVersion:
        """The version new buyers get."""
        return self.plans[name][-1]

    def get(self, name: str, version: int | None = None) -> PlanVersion:
        """A specific version; an unknown version falls back to the current one."""
        versions = self.plans[name]
        if version is not None:
            for v in versions:
                if v.version == version:
                    return v
        return versions[-1]

    def self_serve_by_price(self) -> list[PlanVersion]:
        """Current self-serve plans, cheapest first (for upgrade suggestions)."""
        plans = [self.current(n) for n in self.plans if self.current(n).self_serve]
        return sorted(plans, key=lambda p: p.monthly_price_cents or 0)


_PAID_ON_DEMAND = {"error": 0.029, "transaction": 0.0013, "replay": 0.3, "attachment": 25 / GB}
_QUOTAS_FREE = {"error": 5_000, "transaction": 10_000, "replay": 50, "attachment": GB}
_QUOTAS_PAID = {"error": 50_000, "transaction": 100_000, "replay": 500, "attachment": GB}


def default_catalog() -> Catalog:
    """The built-in catalog (DESIGN.md's table)."""
    team_features = frozenset({"integrations"})
    business_features = team_features | {
        "advanced_analytics",
        "custom_dashboards",
        "cross_project_issues",
    }
    plans = [
        PlanVersion(
            "free",
            1,
            "Developer",
            0,
            _QUOTAS_FREE,
            retention_days=30,
            members=1,
            hard_stop=True,
            spike_protection=False,
        ),
        PlanVersion(
            "team",
            1,
            "Team",
            2_600,
            _QUOTAS_PAID,
            annual_price_cents=28_800,
            on_demand_cents=_PAID_ON_DEMAND,
            retention_days=90,
            features=team_features,
        ),
        PlanVersion(
            "business",
            1,
            "Business",
            8_000,
            _QUOTAS_PAID,
            annual_price_cents=93_600,
            on_demand_cents=_PAID_ON_DEMAND,
            retention_days=90,
            features=business_features,
        ),
        PlanVersion(
            "enterprise",
            1,
            "Enterprise",
            None,
            _QUOTAS_PAID,
            on_demand_cents=_PAID_ON_DEMAND,
            retention_days=365,
            features=business_features | {"sso", "compliance"},
            self_serve=False,
        ),
    ]
    return Catalog({p.name: (p,) for p in plans})


def _plan_from_dict(name: str, raw: Mapping[str, Any]) -> PlanVersion:
    try:
        return PlanVersion(
            name=name,
            version=int(raw.get("version", 1)),
            title=str(raw.get("title", name.title())),
            monthly_price_cents=raw.get("monthly_price_cents"),
            annual_price_cents=raw.get("annual_price_cents"),
            quotas=dict(raw.get("quotas", {})),
            on_demand_cents={k: float(v) for k, v in raw.get("on_demand_cents", {}).items()},
            retention_days=int(raw.get("retention_days", 30)),
            members=raw.get("members"),
            features=frozenset(raw.get("features", ())),
            self_serve=bool(raw.get("self_serve", True)),
            hard_stop=bool(raw.get("hard_stop", False)),
            spike_protection=bool(raw.get("spike_protection", True)),
        )
    except (TypeError, ValueError) as exc:
        raise CatalogError(f"plan {name!r}: {exc}") from exc


def load_catalog(text: str) -> Catalog:
    """Parse a catalog from JSON: ``{"default_plan": "free", "plans": {"free": [{...}, ...]}}``.

    Each plan maps to a list of versions (or a single object for one version).
    """
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CatalogError(f"catalog is not valid JSON: {exc}") from exc
    plans: dict[str, tuple[PlanVersion, ...]] = {}
    for name, versions in dict(raw.get("plans", {})).items():
        items = versions if isinstance(versions, list) else [versions]
        plans[name] = tuple(_plan_from_dict(name, v) for v in items)
    return Catalog(plans, default_plan=raw.get("default_plan", "free"))
