"""The hosted billing page in a real headless Chromium (Playwright, Debian's /usr/bin/chromium):
the app serves on 127.0.0.1 with Stripe pointed at the fake Stripe server, usage is consumed through
the quota API and counted by the real Redis meter, and the browser signs in with a billing-session
link exactly as a customer would."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from app.billing.services import CatalogSync
from app.billing.stripe_client import StripeGateway
from app.clock import ManualClock
from app.infra.embedded_redis import EmbeddedRedis
from app.main import create_app, flush_once
from app.plans import default_catalog
from app.settings import StripeSettings
from tests.conftest import ADMIN_TOKEN, AppClient, live_server, make_settings
from tests.harness.fake_stripe import FakeStripe

playwright_api = pytest.importorskip("playwright.async_api")

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]
ARTIFACT = ROOT / "tests" / "artifacts" / "billing-page.png"
DOCS_SHOT = ROOT / "docs" / "billing-page.png"
API_KEY = "sk_test_billing_page"
TIMEOUT_MS = 20_000

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium package")


@dataclass
class Site:
    client: AppClient
    base: str
    clock: ManualClock
    fake: FakeStripe

    async def org(self, plan: str = "team") -> dict[str, Any]:
        resp = await self.client.post(
            "/v1/organizations", json={"name": f"Acme {uuid.uuid4().hex[:6]}", "plan": plan}
        )
        assert resp.status_code == 201, resp.text
        return resp.json()  # type: ignore[no-any-return]

    async def link(self, org_id: str) -> dict[str, Any]:
        resp = await self.client.post(f"/v1/organizations/{org_id}/billing-session")
        assert resp.status_code == 201, resp.text
        return resp.json()  # type: ignore[no-any-return]

    async def consume(self, org_id: str, category: str, quantity: int) -> None:
        resp = await self.client.post(
            "/v1/quotas/consume",
            json={"organization_id": org_id, "items": [{"category": category, "quantity": quantity}]},
        )
        assert resp.status_code == 200 and resp.json()["accepted"], resp.text

    async def flush(self) -> None:
        """What the usage flush loop does every ``meter.flush_interval`` seconds."""
        await flush_once(self.client.app.state.ctx, self.client.app.state.flusher)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeStripe]:
    with FakeStripe() as server:
        yield server


@pytest.fixture(scope="module")
async def site(
    workdir: Path, redis_server: EmbeddedRedis, sqlite_url: str, fake: FakeStripe
) -> AsyncIterator[Site]:
    stripe = StripeSettings(
        api_key=SecretStr(API_KEY), api_base=fake.url, max_network_retries=1, timeout=10.0
    )
    await CatalogSync(default_catalog(), StripeGateway(stripe), stripe).run()
    settings = make_settings(workdir, sqlite_url, redis_server.url)
    settings.stripe = stripe
    clock = ManualClock()
    app = create_app(settings, clock=clock)
    async with live_server(app) as base, AppClient(app, base_url=base) as client:
        settings.server.public_url = base  # the port is only known now; links and Stripe return here
        client.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
        yield Site(client, base, clock, fake)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, timeout=60_000)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
async def page(browser: Any) -> AsyncIterator[Any]:
    context = await browser.new_context(viewport={"width": 1000, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    tab = await context.new_page()
    yield tab
    await context.close()


async def test_the_page_shows_usage_and_takes_actions(site: Site, page: Any) -> None:
    org = await site.org("team")  # 50,000 errors, 500 replays, on-demand available
    await site.consume(org["id"], "error", 1_200)
    await site.flush()
    site.clock.advance(days=1)
    await site.consume(org["id"], "error", 800)
    await site.consume(org["id"], "replay", 40)  # under the spike burst (10%)
    yesterday = (site.clock.now().date() - timedelta(days=1)).isoformat()
    today = site.clock.now().date().isoformat()

    link = await site.link(org["id"])
    response = await page.goto(site.base + link["path"])
    assert response.status == 200
    assert page.url == f"{site.base}/billing/{org['id']}"  # the token is gone from the address bar
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp and "frame-ancestors 'none'" in csp
    html = await page.content()
    assert "<script" not in html and "style=" not in html

    assert await page.get_by_test_id("plan").inner_text() == "Team version 1"
    assert await page.get_by_test_id("status").inner_text() == "Active"
    errors = await page.get_by_test_id("usage-error").inner_text()
    assert errors == "2,000 of 50,000 used (4%)"
    assert await page.get_by_test_id("bar-error").get_attribute("value") == "2000"
    assert await page.get_by_test_id("usage-replay").inner_text() == "40 of 500 used (8%)"
    bars = page.get_by_test_id("chart-error").locator("rect.col")
    values = {
        await b.get_attribute("data-day"): int(await b.get_attribute("data-value")) for b in await bars.all()
    }
    assert values[yesterday] == 1_200 and values[today] == 800
    assert sum(values.values()) == 2_000
    assert await page.locator(f'[data-testid="daily-replay"] td[data-day="{today}"]').text_content() == "40"

    # works at phone width: nothing scrolls sideways
    await page.set_viewport_size({"width": 375, "height": 800})
    wide = await page.evaluate(
        "[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > 376)"
        ".map(e => e.tagName + '.' + e.className + ':' + Math.round(e.getBoundingClientRect().right))"
    )
    assert await page.evaluate("document.documentElement.scrollWidth") <= 375, wide
    await page.set_viewport_size({"width": 1000, "height": 900})
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACT), full_page=True)
    if not DOCS_SHOT.exists():
        shutil.copyfile(ARTIFACT, DOCS_SHOT)

    # set an on-demand budget
    await page.get_by_label("Monthly budget in US dollars").fill("25")
    await page.get_by_role("button", name="Set budget").click()
    await page.wait_for_url(f"**/billing/{org['id']}?notice=budget_saved")
    assert "Budget saved" in await page.get_by_test_id("notice").inner_text()
    assert (await page.get_by_test_id("budget").inner_text()).startswith("$0.00 of $25.00 spent")
    org_now = (await site.client.get(f"/v1/organizations/{org['id']}")).json()
    assert org_now["on_demand_budget_cents"] == 2_500

    # the audit trail shows the change, with who made it
    audit = await page.get_by_test_id("audit").inner_text()
    assert "On-demand budget set to $25.00" in audit and "billing-page:link" in audit
    assert "Organization created on team@v1" in audit

    # upgrade: the form posts here, and the answer sends the browser to Stripe Checkout
    # (the fake's checkout page pays at once and sends the browser back to the success URL)
    async with page.expect_request(f"{site.fake.url}/checkout/pay/cs_*") as checkout:
        await page.get_by_test_id("choose-business").click()
    assert (await checkout.value).url.startswith(f"{site.fake.url}/checkout/pay/")
    await page.wait_for_url(f"{site.base}/billing/{org['id']}?notice=checkout_success")
    assert "Payment received" in await page.get_by_test_id("notice").inner_text()
    billing = (await site.client.get(f"/v1/organizations/{org['id']}/billing")).json()
    assert billing["has_customer"] is True


async def test_links_are_single_use_short_lived_and_bound_to_one_org(site: Site, page: Any) -> None:
    org, other = await site.org("free"), await site.org("free")
    link = await site.link(org["id"])
    assert link["url"] == site.base + link["path"] and link["path"].startswith("/billing/session/")

    first = await page.goto(site.base + link["path"])
    assert first.status == 200
    assert await page.get_by_test_id("plan").inner_text() == "Developer version 1"
    assert await page.get_by_test_id("stripe-off").count() == 0  # Stripe is configured here
    assert "paid plans" in await page.get_by_test_id("budget").inner_text()  # free: no budget form

    reused = await page.goto(site.base + link["path"])
    assert reused.status == 403
    assert "expired or was already used" in await page.get_by_test_id("message").inner_text()

    # another org's page, with this org's session: refused, and nothing of the other org shown
    foreign = await page.goto(f"{site.base}/billing/{other['id']}")
    assert foreign.status == 403
    assert other["name"] not in await page.content()

    # a forged form (no token bound to this session) changes nothing
    forged = await page.context.request.post(
        f"{site.base}/billing/{org['id']}/budget", form={"budget": "99", "csrf": "forged"}
    )
    assert forged.status == 403

    expiring = await site.link(org["id"])
    site.clock.advance(minutes=6)  # the default lifetime is 5 minutes
    expired = await page.goto(site.base + expiring["path"])
    assert expired.status == 403
    assert "expired or was already used" in await page.get_by_test_id("message").inner_text()

    fresh = await page.context.browser.new_context()
    try:
        anonymous = await (await fresh.new_page()).goto(f"{site.base}/billing/{org['id']}")
        assert anonymous.status == 401
    finally:
        await fresh.close()
