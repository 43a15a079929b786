"""Billing errors: facts a client can act on. Stripe's own messages never reach clients."""

from __future__ import annotations

from typing import ClassVar

from app.errors import Conflict, InvalidInput, NotFound, ServiceUnavailable, TollgateError


class StripeUnavailable(ServiceUnavailable):
    code = "stripe_unavailable"
    default_detail = "Stripe could not be reached or failed; nothing was changed. Try again shortly."


class StripeNotConfigured(ServiceUnavailable):
    code = "stripe_not_configured"
    default_detail = "Stripe billing is not configured on this deployment."


class StripeRequestRejected(InvalidInput):
    code = "stripe_request_rejected"
    default_detail = "Stripe refused the request."


class StripeObjectMissing(NotFound):
    code = "stripe_object_missing"
    default_detail = "The Stripe object does not exist."


class StripeIdempotencyConflict(Conflict):
    code = "stripe_idempotency_conflict"
    default_detail = "A concurrent request for the same billing operation is in progress; try again."


class PaymentFailed(TollgateError):
    status_code: ClassVar[int] = 402
    code = "payment_failed"
    default_detail = "The payment method on file was declined; update it in the billing portal."


class CatalogNotSynced(ServiceUnavailable):
    code = "stripe_catalog_not_synced"
    default_detail = "The plan has no Stripe price yet; an operator must run `tollgate stripe sync`."


class PlanNotPurchasable(InvalidInput):
    code = "plan_not_purchasable"


class IntervalNotOffered(InvalidInput):
    code = "interval_not_offered"


class InvalidRedirectUrl(InvalidInput):
    code = "invalid_redirect_url"


class PlanAlreadyActive(Conflict):
    code = "plan_already_active"
    default_detail = "The organization is already on this plan."


class MarketplaceBilled(Conflict):
    code = "marketplace_billed"
    default_detail = (
        "This organization is billed through a marketplace; change its plan there, not through Stripe."
    )


class NoBillingAccount(Conflict):
    code = "no_billing_account"
    default_detail = "This organization has no Stripe customer yet; start with a checkout."


class WebhookNotConfigured(ServiceUnavailable):
    code = "stripe_webhooks_not_configured"
    default_detail = "No Stripe webhook secret is configured; deliveries are refused."


class InvalidSignature(InvalidInput):
    status_code: ClassVar[int] = 400
    code = "invalid_signature"
    default_detail = "The Stripe-Signature header does not verify against the raw body."


class InvalidEvent(InvalidInput):
    status_code: ClassVar[int] = 400
    code = "invalid_event"
    default_detail = "The body is not a Stripe event."
