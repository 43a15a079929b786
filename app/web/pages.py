"""Rendering: Jinja2 templates (autoescaped) and the security headers every page carries.

Pages load one stylesheet from ``/billing/static`` and no script at all, so the
Content-Security-Policy can be strict: nothing inline, nothing from another origin, forms posting
only here (and the redirects that follow them only to Stripe's Checkout and portal).
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any
from urllib.parse import urlsplit

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from litestar import Response
from litestar.enums import MediaType

from app.settings import Settings

_ENV = Environment(
    loader=PackageLoader("app.web", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
STYLESHEET = files("app.web").joinpath("static/billing.css").read_bytes()
STRIPE_HOSTS = ("https://checkout.stripe.com", "https://billing.stripe.com")


def render(template: str, **context: Any) -> str:
    return _ENV.get_template(template).render(**context)


def content_security_policy(settings: Settings | None) -> str:
    targets = list(STRIPE_HOSTS)
    if settings is not None and settings.stripe.api_base:
        # A Stripe stand-in (tests, stripe-mock) serves its own pages. Chromium does not match a
        # redirect after a form post against a host-source with an explicit non-default port, so
        # the stand-in's host is allowed on any port.
        parts = urlsplit(settings.stripe.api_base)
        targets.append(f"{parts.scheme}://{parts.hostname}:*")
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "base-uri 'none'; frame-ancestors 'none'; "
        f"form-action 'self' {' '.join(targets)}"
    )


def security_headers(settings: Settings | None) -> dict[str, str]:
    return {
        "Cache-Control": "no-store",
        "Content-Security-Policy": content_security_policy(settings),
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }


def html(content: str, status: int = 200, settings: Settings | None = None) -> Response[str]:
    return Response(
        content, status_code=status, media_type=MediaType.HTML, headers=security_headers(settings)
    )


def message_page(title: str, message: str, status: int, settings: Settings | None = None) -> Response[str]:
    """A plain page with one message: refusals, sign-in errors."""
    return html(render("message.html", title=title, message=message), status, settings)
