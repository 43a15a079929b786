"""Catalog sync: Products, Prices (by lookup key) and the on-demand meter, idempotently."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from app.billing.services import CatalogSync
from app.billing.stripe_client import StripeGateway
from app.cli import cli
from app.plans import load_catalog
from app.settings import StripeSettings
from tests.billing.conftest import API_KEY
from tests.harness.fake_stripe import FakeStripe


def _catalog(name: str, monthly: int) -> Any:
    return load_catalog(
        json.dumps(
            {
                "plans": {
                    "free": {"monthly_price_cents": 0, "quotas": {"error": 10}},
                    name: {
                        "monthly_price_cents": monthly,
                        "annual_price_cents": 9_900,
                        "quotas": {"error": 100},
                    },
                    "custom": {"monthly_price_cents": None, "self_serve": False, "quotas": {}},
                }
            }
        )
    )


def _actions(report: Any) -> dict[str, str]:
    return {f"{i.kind}:{i.key}": i.action for i in report.items}


async def test_sync_creates_then_changes_nothing_then_moves_a_changed_price(
    fake: FakeStripe, synced: None
) -> None:
    name = f"pro{uuid.uuid4().hex[:6]}"
    gw = StripeGateway(StripeSettings(api_key=SecretStr(API_KEY), api_base=fake.url))
    month, year = f"tollgate_{name}_v1_month", f"tollgate_{name}_v1_year"

    first = await CatalogSync(_catalog(name, 1_000), gw, gw.settings).run()
    assert _actions(first) == {
        f"product:tollgate_{name}": "created",
        f"price:{month}": "created",
        f"price:{year}": "created",
        "meter:tollgate_on_demand_cents": "unchanged",
        "product:tollgate_on_demand": "unchanged",
        "price:tollgate_on_demand_cents": "unchanged",
    }  # free and the per-contract plan are not sold through Stripe

    second = await CatalogSync(_catalog(name, 1_000), gw, gw.settings).run()
    assert set(_actions(second).values()) == {"unchanged"}
    assert second.changed == 0

    stripe = fake.client(API_KEY)
    prices = await asyncio.to_thread(stripe.v1.prices.list, {"lookup_keys": [month, year]})
    by_key = {p.lookup_key: p for p in prices.data}
    assert (by_key[month].unit_amount, by_key[month].recurring.interval) == (1_000, "month")
    assert (by_key[year].unit_amount, by_key[year].recurring.interval) == (9_900, "year")
    assert by_key[month].product == f"tollgate_{name}"
    assert by_key[month].metadata["tollgate_plan"] == name

    third = await CatalogSync(_catalog(name, 1_200), gw, gw.settings).run()
    assert _actions(third)[f"price:{month}"] == "updated"
    assert _actions(third)[f"price:{year}"] == "unchanged"
    moved = await asyncio.to_thread(stripe.v1.prices.list, {"lookup_keys": [month]})
    assert [p.unit_amount for p in moved.data] == [1_200]
    old = await asyncio.to_thread(stripe.v1.prices.retrieve, by_key[month].id)
    assert old.active is False and old.lookup_key is None


async def test_cli_stripe_sync_is_idempotent(
    fake: FakeStripe, synced: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOLLGATE_STRIPE__API_KEY", API_KEY)
    monkeypatch.setenv("TOLLGATE_STRIPE__API_BASE", fake.url)
    result = await asyncio.to_thread(CliRunner().invoke, cli, ["stripe", "sync"])
    assert result.exit_code == 0, result.output
    items = json.loads(result.stdout)["items"]
    keys = {i["key"] for i in items if i["kind"] == "price"}
    assert {"tollgate_team_v1_month", "tollgate_team_v1_year", "tollgate_business_v1_month"} <= keys
    assert "tollgate_enterprise_v1_month" not in keys and "tollgate_free_v1_month" not in keys
    assert {i["action"] for i in items} == {"unchanged"}

    monkeypatch.delenv("TOLLGATE_STRIPE__API_KEY")
    unconfigured = await asyncio.to_thread(CliRunner().invoke, cli, ["stripe", "sync"])
    assert unconfigured.exit_code == 1
    assert "stripe_not_configured" in unconfigured.stderr
