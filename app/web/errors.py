"""Billing-page errors: facts the customer can act on."""

from __future__ import annotations

from typing import ClassVar

from app.errors import Conflict, Forbidden, InvalidInput, ServiceUnavailable


class LinkUnusable(Forbidden):
    code = "billing_link_unusable"
    default_detail = (
        "This sign-in link has expired or was already used. Links work once, for a few minutes: "
        "open the billing page again from your product to get a new one."
    )


class NotSignedIn(Forbidden):
    status_code: ClassVar[int] = 401
    code = "not_signed_in"
    default_detail = (
        "You are not signed in to this billing page, or your session has ended. Open it again from "
        "your product (or your marketplace dashboard)."
    )


class OtherOrganization(Forbidden):
    code = "other_organization"
    default_detail = "You are signed in to a different organization; this page is not yours to see."


class CsrfFailed(Forbidden):
    code = "csrf_failed"
    default_detail = "The form has expired or did not come from this page. Reload the page and try again."


class OrganizationGone(Forbidden):
    code = "organization_gone"
    default_detail = "This organization is no longer active."


class BudgetNotOffered(Conflict):
    code = "budget_not_offered"
    default_detail = "On-demand budgets are available on paid plans billed by card."


class InvalidBudget(InvalidInput):
    code = "invalid_budget"
    default_detail = "Enter the budget as an amount in dollars, such as 50 or 12.50."


class SessionStoreUnavailable(ServiceUnavailable):
    code = "session_store_unavailable"
    default_detail = "Sign-in is briefly unavailable; try again in a moment."
