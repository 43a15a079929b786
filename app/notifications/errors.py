"""Notification errors: facts a caller can act on."""

from __future__ import annotations

from app.errors import InvalidInput, NotFound


class WebhookEndpointNotFound(NotFound):
    code = "webhook_endpoint_not_found"
    default_detail = "No such webhook endpoint."


class InvalidEndpointUrl(InvalidInput):
    code = "invalid_endpoint_url"
    default_detail = "The endpoint URL must be an absolute http(s) URL."


class EndpointAddressNotAllowed(InvalidInput):
    code = "endpoint_address_not_allowed"
    default_detail = (
        "The endpoint URL points to a private, loopback or link-local address, which this "
        "deployment does not call."
    )


class UnknownEventType(InvalidInput):
    code = "unknown_event_type"
