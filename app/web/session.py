"""The customer's browser session: a small signed cookie bound to one organization.

Set by marketplace SSO and by single-use billing-session links; read by the billing page. The
value is ``base64url(json).base64url(hmac)`` with HMAC-SHA256 under ``marketplace.session_key``
(generated once on embedded defaults); it holds
no secret, only the org id, where the session came from and its expiry. The cookie is httpOnly,
SameSite=Lax, Secure when the public URL is https, and scoped to ``/billing``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from litestar.datastructures import Cookie

COOKIE_NAME = "tollgate_session"
COOKIE_PATH = "/billing"


@dataclass(frozen=True, slots=True)
class WebSession:
    organization_id: UUID
    source: str
    user: str | None
    expires_at: int


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(key: str, payload: str) -> str:
    return _b64(hmac.new(key.encode(), payload.encode(), hashlib.sha256).digest())


def issue(key: str, session: WebSession) -> str:
    body = {
        "o": str(session.organization_id),
        "s": session.source,
        "u": session.user,
        "e": session.expires_at,
    }
    payload = _b64(json.dumps(body, separators=(",", ":")).encode())
    return f"{payload}.{_sign(key, payload)}"


def read(key: str, value: str | None, now: float) -> WebSession | None:
    """The session in ``value`` if its signature holds and it has not expired, else ``None``."""
    if not value or len(value) > 1024 or "." not in value:
        return None
    payload, _, signature = value.partition(".")
    if not hmac.compare_digest(signature.encode(), _sign(key, payload).encode()):
        return None
    try:
        body: dict[str, Any] = json.loads(_unb64(payload))
        session = WebSession(UUID(body["o"]), str(body["s"]), body.get("u"), int(body["e"]))
    except (ValueError, KeyError, TypeError):
        return None
    return session if session.expires_at > now else None


def cookie(value: str, max_age: int, secure: bool) -> Cookie:
    return Cookie(
        key=COOKIE_NAME,
        value=value,
        max_age=max_age,
        path=COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=secure,
    )


def csrf_token(key: str, cookie_value: str) -> str:
    """The forms' anti-forgery token: bound to this very session cookie (a token from another
    session, or a forged form without the cookie's value, does not verify)."""
    return _b64(hmac.new(key.encode(), b"csrf|" + cookie_value.encode(), hashlib.sha256).digest())


def csrf_ok(key: str, cookie_value: str | None, token: str | None) -> bool:
    if not cookie_value or not token:
        return False
    return hmac.compare_digest(csrf_token(key, cookie_value).encode(), token.encode())
