"""The interim billing page: the org's plan and usage, for a browser signed in through marketplace SSO.

NOTE: this is a stand-in. The billing-page issue replaces it with the real hosted billing page
(upgrade, card, invoices); it keeps this URL and the session cookie set by ``app.web.session``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from typing import Any
from uuid import UUID

from litestar import Controller, Request, Response, get
from litestar.response import Redirect
from sqlalchemy.ext.asyncio import AsyncSession

from app.context import AppContext
from app.marketplace.deps import marketplace_secrets
from app.metering.usage import read_usage
from app.orgs.repositories import OrganizationRepository
from app.web import pages
from app.web import session as web_session

AnyRequest = Request[Any, Any, Any]


def _session(request: AnyRequest, ctx: AppContext) -> web_session.WebSession | None:
    key = marketplace_secrets(request.app.state).session_key
    return web_session.read(key, request.cookies.get(web_session.COOKIE_NAME), ctx.clock.time())


def _when(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


class BillingPageController(Controller):
    path = "/billing"
    tags = ["web"]
    include_in_schema = False

    @get("/", summary="The signed-in org's billing page")
    async def mine(self, request: AnyRequest, ctx: AppContext) -> Response[str] | Redirect:
        current = _session(request, ctx)
        if current is None:
            return _signed_out()
        return Redirect(f"/billing/{current.organization_id}")

    @get("/{organization_id:uuid}", summary="Plan and usage of one org (session cookie required)")
    async def page(
        self, request: AnyRequest, organization_id: UUID, session: AsyncSession, ctx: AppContext
    ) -> Response[str]:
        current = _session(request, ctx)
        if current is None:
            return _signed_out()
        if current.organization_id != organization_id:
            return pages.message_page("Not yours", "This session belongs to another organization.", 403)
        org = await OrganizationRepository(session=session).get_one_or_none(id=organization_id)
        if org is None or org.status == "deprovisioned":
            return pages.message_page("Gone", "This organization is no longer active.", 403)
        usage = await read_usage(ctx.meter, str(org.id))
        rows = "".join(
            "<tr>"
            f"<td>{escape(c.category)}</td>"
            f"<td>{c.used:,} {escape(c.unit)}s</td>"
            f"<td>{'unlimited' if c.limit is None else f'{c.limit:,}'}</td>"
            f"<td>{'-' if c.remaining is None else f'{c.remaining:,}'}</td>"
            "</tr>"
            for c in usage.categories
        )
        billed_by = {"marketplace": "your marketplace (e.g. Heroku)", "stripe": "card"}.get(
            org.billing_source, org.billing_source
        )
        body = (
            f"<h1>{escape(org.name)}</h1>"
            f"<p>Plan: <strong data-plan>{escape(org.plan)}</strong> "
            f"<span class=muted>(v{org.plan_version}, status {escape(org.status)}, billed by "
            f"{escape(billed_by)})</span></p>"
            f"<p class=muted>Period {_when(usage.period_start)} to {_when(usage.period_end)}</p>"
            "<table><thead><tr><th>Category</th><th>Used</th><th>Limit</th><th>Remaining</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>"
            "<p class=muted>Change plans from your marketplace dashboard.</p>"
        )
        return pages.html(pages.document(f"{org.name} - billing", body))


def _signed_out() -> Response[str]:
    return pages.message_page(
        "Sign in", "Open this page from your marketplace dashboard (single sign-on).", 401
    )
