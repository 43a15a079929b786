"""The pure side: a trial feeds the same effective-limits function as plan and overrides."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from app.entitlements.services import entitlement_changes, feature_upgrade, seats_upgrade
from app.metering.config import active_trial, org_limits
from app.plans import Overrides, PlanVersion, default_catalog, effective_limits

CATALOG = default_catalog()
NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)


def test_a_trial_is_the_plan_in_effect_and_never_takes_anything_away() -> None:
    free, team = CATALOG.current("free"), CATALOG.current("team")
    generous = PlanVersion("free", 2, "Old free", 0, {"error": 80_000}, retention_days=120, members=3)
    eff = effective_limits(generous, trial=team)
    assert (eff.plan, eff.version) == ("team", 1)
    assert eff.quota("error") == 80_000 and eff.quota("transaction") == 100_000
    assert eff.members is None and eff.retention_days == 120
    assert eff.features == team.features and not eff.hard_stop
    # overrides still win over both
    ov = Overrides.from_dict({"features": {"integrations": False}, "members": 2})
    eff = effective_limits(free, ov, trial=team)
    assert "integrations" not in eff.features and eff.members == 2
    assert effective_limits(free, trial=None) == effective_limits(free)


@dataclass
class Row:
    """The columns org_limits reads (an Organization without a database)."""

    plan: str = "free"
    plan_version: int = 1
    overrides: dict[str, Any] | None = None
    on_demand_budget_cents: int = 0
    spike_protection: bool | None = None
    trial_plan: str | None = "business@v1"
    trial_ends_at: datetime | None = NOW + timedelta(days=1)
    trial_previous_plan: str | None = "free@v1"


def test_the_trial_applies_until_its_end_and_only_on_the_plan_it_started_from() -> None:
    row: Any = Row()
    assert active_trial(row, CATALOG, NOW) == CATALOG.current("business")
    assert org_limits(row, CATALOG, NOW).plan == "business"
    assert org_limits(row, CATALOG, NOW + timedelta(days=1)).plan == "free"  # on the second
    assert org_limits(row, CATALOG).plan == "business"  # no clock: the columns decide
    row.plan = "team"  # bought a plan during the trial
    assert active_trial(row, CATALOG, NOW) is None and org_limits(row, CATALOG, NOW).plan == "team"
    assert active_trial(Row(trial_plan=None), CATALOG, NOW) is None  # type: ignore[arg-type]


def test_upgrade_suggestions_and_audit_changes() -> None:
    assert feature_upgrade(CATALOG, "free", 1, "integrations") == "team"
    assert feature_upgrade(CATALOG, "team", 1, "integrations") == "business"  # only plans above
    assert feature_upgrade(CATALOG, "business", 1, "sso") is None
    assert feature_upgrade(CATALOG, "enterprise", 1, "sso") is None
    assert seats_upgrade(CATALOG, "free", 1, 2) == "team"
    before = effective_limits(CATALOG.current("free"))
    after = effective_limits(CATALOG.current("free"), trial=CATALOG.current("team"))
    changes = entitlement_changes(before, after)
    assert changes["plan"] == {"from": "free@v1", "to": "team@v1"}
    assert changes["features_added"] == ["integrations"] and "features_removed" not in changes
    assert changes["retention_days"] == {"from": 30, "to": 90}
    assert changes["quotas"]["error"] == {"from": 5_000, "to": 50_000}
    assert entitlement_changes(after, after) == {}
