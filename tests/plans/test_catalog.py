from datetime import UTC, datetime

import pytest

from app.plans import Catalog, Overrides, PlanVersion, default_catalog, effective_limits
from app.plans.catalog import CatalogError, load_catalog
from app.plans.limits import OverridesError
from app.plans.periods import current_period, monthly_period


def test_default_catalog_matches_design_table() -> None:
    c = default_catalog()
    assert c.names() == ["free", "team", "business", "enterprise"]
    free, team, business = c.current("free"), c.current("team"), c.current("business")
    assert (free.quota("error"), free.quota("transaction"), free.quota("replay")) == (
        5_000,
        10_000,
        50,
    )
    assert (team.quota("error"), team.quota("transaction"), team.quota("replay")) == (
        50_000,
        100_000,
        500,
    )
    assert free.quota("attachment") == team.quota("attachment") == 1_000_000_000
    assert (free.monthly_price_cents, team.monthly_price_cents, business.monthly_price_cents) == (
        0,
        2_600,
        8_000,
    )
    assert (free.retention_days, team.retention_days) == (30, 90)
    assert free.members == 1 and team.members is None
    assert free.hard_stop and not team.hard_stop
    assert "advanced_analytics" in business.features and "advanced_analytics" not in team.features
    assert not c.current("enterprise").self_serve


def test_effective_limits_apply_overrides_without_touching_the_plan() -> None:
    team = default_catalog().current("team")
    ov = Overrides.from_dict(
        {
            "quotas": {"error": 2_000_000, "replay": None},
            "features": {"sso": True, "integrations": False},
            "members": 25,
            "retention_days": 400,
        }
    )
    eff = effective_limits(team, ov, on_demand_budget_cents=5_000)
    assert eff.quota("error") == 2_000_000
    assert eff.quota("replay") is None  # unlimited
    assert eff.quota("transaction") == 100_000  # untouched
    assert "sso" in eff.features and "integrations" not in eff.features
    assert (eff.members, eff.retention_days) == (25, 400)
    assert eff.on_demand_enabled
    assert team.quota("error") == 50_000  # the plan itself is unchanged


def test_free_plan_never_has_on_demand_even_with_a_budget() -> None:
    free = default_catalog().current("free")
    eff = effective_limits(free, None, on_demand_budget_cents=10_000)
    assert eff.on_demand_budget_cents == 0 and not eff.on_demand_enabled


@pytest.mark.parametrize(
    "raw",
    [
        {"quotas": {"bogus": 1}},
        {"quotas": {"error": -1}},
        {"features": {"teleport": True}},
        {"members": -2},
        {"retention_days": 0},
    ],
)
def test_overrides_refuse_invalid_values(raw: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(OverridesError):
        Overrides.from_dict(raw)


def test_versions_are_kept_for_grandfathered_orgs() -> None:
    catalog = load_catalog("""{"plans": {
        "free": {"monthly_price_cents": 0, "quotas": {"error": 5000}, "hard_stop": true},
        "team": [{"version": 1, "monthly_price_cents": 2600, "quotas": {"error": 50000}},
                 {"version": 2, "monthly_price_cents": 2900, "quotas": {"error": 60000}}]}}""")
    assert catalog.current("team").version == 2
    assert catalog.get("team", 1).quota("error") == 50_000
    assert catalog.get("team", 2).quota("error") == 60_000


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        '{"plans": {"team": {"quotas": {"error": -5}, "monthly_price_cents": 1}}, "default_plan": "team"}',
        '{"plans": {"team": {"quotas": {}}}, "default_plan": "team"}',  # self-serve without a price
        '{"plans": {"team": {"monthly_price_cents": 1}}}',  # default plan 'free' missing
    ],
)
def test_catalog_refuses_broken_configuration(text: str) -> None:
    with pytest.raises(CatalogError):
        load_catalog(text)


def test_catalog_refuses_unordered_versions() -> None:
    v2 = PlanVersion("free", 2, "Free", 0, {})
    v1 = PlanVersion("free", 1, "Free", 0, {})
    with pytest.raises(CatalogError):
        Catalog({"free": (v2, v1)})


def test_monthly_period_is_anchored_on_creation_day_and_clamped() -> None:
    anchor = datetime(2026, 1, 31, 10, 0, tzinfo=UTC)
    assert monthly_period(anchor, datetime(2026, 2, 15, tzinfo=UTC)) == (
        datetime(2026, 1, 31, 10, 0, tzinfo=UTC),
        datetime(2026, 2, 28, 10, 0, tzinfo=UTC),
    )
    assert monthly_period(anchor, datetime(2026, 3, 1, tzinfo=UTC)) == (
        datetime(2026, 2, 28, 10, 0, tzinfo=UTC),
        datetime(2026, 3, 31, 10, 0, tzinfo=UTC),
    )
    assert monthly_period(anchor, datetime(2026, 4, 30, 10, 0, tzinfo=UTC))[0] == datetime(
        2026, 4, 30, 10, 0, tzinfo=UTC
    )


def test_subscription_period_wins_and_rolls_monthly_when_stale() -> None:
    anchor = datetime(2026, 1, 5, tzinfo=UTC)
    sub = (datetime(2026, 3, 20, tzinfo=UTC), datetime(2026, 4, 20, tzinfo=UTC))
    assert current_period(anchor, datetime(2026, 4, 1, tzinfo=UTC), sub) == sub
    assert current_period(anchor, datetime(2026, 4, 25, tzinfo=UTC), sub) == (
        datetime(2026, 4, 20, tzinfo=UTC),
        datetime(2026, 5, 20, tzinfo=UTC),
    )
