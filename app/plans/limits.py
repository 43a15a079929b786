"""Effective limits: plan version + the org's overrides, as one pure function.

This is the contract between the control plane and the meter (Sentry's ``QuotaConfig`` plays the
same role): the meter never looks at plans, only at what :func:`effective_limits` produced.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from app.plans.catalog import CATEGORIES, FEATURES, PlanVersion


class OverridesError(ValueError):
    """Overrides that cannot apply (unknown category or feature, negative limit)."""


@dataclass(frozen=True, slots=True)
class Overrides:
    """Per-organization exceptions to its plan (enterprise contracts, goodwill grants)."""

    quotas: Mapping[str, int | None] = field(default_factory=dict)
    features: Mapping[str, bool] = field(default_factory=dict)
    members: int | None = None
    members_set: bool = False
    retention_days: int | None = None

    def __post_init__(self) -> None:
        unknown = set(self.quotas) - set(CATEGORIES)
        if unknown:
            raise OverridesError(f"unknown categories: {', '.join(sorted(unknown))}")
        if any(v is not None and (not isinstance(v, int) or v < 0) for v in self.quotas.values()):
            raise OverridesError("quota overrides must be whole numbers >= 0, or null (unlimited)")
        bad = set(self.features) - set(FEATURES)
        if bad:
            raise OverridesError(f"unknown features: {', '.join(sorted(bad))}")
        if self.members is not None and self.members < 0:
            raise OverridesError("members must be >= 0")
        if self.retention_days is not None and self.retention_days < 1:
            raise OverridesError("retention_days must be >= 1")

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> Overrides:
        raw = raw or {}
        try:
            return cls(
                quotas=dict(raw.get("quotas") or {}),
                features={k: bool(v) for k, v in (raw.get("features") or {}).items()},
                members=raw.get("members"),
                members_set="members" in raw,
                retention_days=raw.get("retention_days"),
            )
        except (TypeError, AttributeError) as exc:
            raise OverridesError(str(exc)) from exc

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.quotas:
            out["quotas"] = dict(self.quotas)
        if self.features:
            out["features"] = dict(self.features)
        if self.members_set:
            out["members"] = self.members
        if self.retention_days is not None:
            out["retention_days"] = self.retention_days
        return out


@dataclass(frozen=True, slots=True)
class EffectiveLimits:
    """What one organization may do right now."""

    plan: str
    version: int
    quotas: Mapping[str, int | None]
    """Monthly allowance per category; ``None`` is unlimited."""
    on_demand_cents: Mapping[str, float]
    on_demand_budget_cents: int
    hard_stop: bool
    spike_protection: bool
    features: frozenset[str]
    members: int | None
    retention_days: int

    def quota(self, category: str) -> int | None:
        return self.quotas.get(category, 0)

    @property
    def on_demand_enabled(self) -> bool:
        return not self.hard_stop and self.on_demand_budget_cents > 0


def _more(a: int | None, b: int | None) -> int | None:
    """The more generous of two limits (``None`` is unlimited)."""
    if a is None or b is None:
        return None
    return max(a, b)


def effective_limits(
    plan: PlanVersion,
    overrides: Overrides | None = None,
    *,
    on_demand_budget_cents: int = 0,
    spike_protection: bool | None = None,
    trial: PlanVersion | None = None,
) -> EffectiveLimits:
    """Combine a plan version with the org's overrides and settings. Pure.

    ``trial`` is a plan version the org is trying: while it runs it is the plan in effect (name,
    prices, hard stop, spike default), its features are added to the plan's and each numeric limit
    is the more generous of the two, so a trial never takes anything away. Overrides apply on top.
    """
    ov = overrides or Overrides()
    quotas = {c: plan.quota(c) for c in CATEGORIES}
    features = set(plan.features)
    members, retention = plan.members, plan.retention_days
    if trial is not None:
        quotas = {c: _more(q, trial.quota(c)) for c, q in quotas.items()}
        features |= trial.features
        members, retention = _more(members, trial.members), max(retention, trial.retention_days)
        plan = trial
    quotas.update(ov.quotas)
    for name, enabled in ov.features.items():
        (features.add if enabled else features.discard)(name)
    return EffectiveLimits(
        plan=plan.name,
        version=plan.version,
        quotas=quotas,
        on_demand_cents=dict(plan.on_demand_cents),
        on_demand_budget_cents=0 if plan.hard_stop else max(0, on_demand_budget_cents),
        hard_stop=plan.hard_stop,
        spike_protection=plan.spike_protection if spike_protection is None else spike_protection,
        features=frozenset(features),
        members=ov.members if ov.members_set else members,
        retention_days=ov.retention_days or retention,
    )
