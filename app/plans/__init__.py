"""The plan catalog and effective limits. Pure: no I/O, no other domain imported."""

from app.plans.catalog import (
    CATEGORIES,
    FEATURES,
    Catalog,
    PlanVersion,
    default_catalog,
    load_catalog,
)
from app.plans.limits import EffectiveLimits, Overrides, effective_limits

__all__ = [
    "CATEGORIES",
    "FEATURES",
    "Catalog",
    "EffectiveLimits",
    "Overrides",
    "PlanVersion",
    "default_catalog",
    "effective_limits",
    "load_catalog",
]
