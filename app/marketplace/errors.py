"""Marketplace errors. Heroku shows ``detail`` to its user as the response's ``message``."""

from __future__ import annotations

from app.errors import Conflict, Forbidden, InvalidInput, NotFound, ServiceUnavailable, Unauthorized


class MarketplaceCredentialsInvalid(Unauthorized):
    code = "marketplace_unauthorized"
    default_detail = "Missing or invalid marketplace credentials."


class MarketplacePlanUnknown(InvalidInput):
    code = "plan_not_found"
    default_detail = "plan not found"


class MarketplaceRegionUnsupported(InvalidInput):
    code = "region_not_supported"
    default_detail = "region not supported"


class MarketplaceRequestInvalid(InvalidInput):
    code = "invalid_request"


class ResourceNotFound(NotFound):
    code = "resource_not_found"
    default_detail = "No such add-on resource."


class ResourceGone(NotFound):
    status_code = 410
    code = "resource_deprovisioned"
    default_detail = "This add-on resource has been deprovisioned."


class ResourceDeprovisioned(InvalidInput):
    """A provision for a uuid whose resource was already deprovisioned: uuids are never reused."""

    code = "resource_deprovisioned"
    default_detail = "This add-on resource was deprovisioned; its uuid cannot be provisioned again."


class ProvisioningInProgress(Conflict):
    code = "provisioning_in_progress"
    default_detail = "This resource is being provisioned by another request; retry shortly."


class ProvisioningNotQueued(ServiceUnavailable):
    code = "provisioning_not_queued"
    default_detail = "The provisioning job could not be queued; retry shortly."


class SsoRefused(Forbidden):
    code = "sso_refused"
    default_detail = "Single sign-on was refused."


class TokensUnreadable(ServiceUnavailable):
    code = "marketplace_tokens_unreadable"
    default_detail = "Stored marketplace secrets cannot be decrypted with the configured key."
