"""Secrets: generation, hashing, constant-time comparison. Secrets are never logged."""

from __future__ import annotations

import hashlib
import hmac
import secrets

ORG_KEY_PREFIX = "tgk_"
SERVICE_TOKEN_PREFIX = "tgs_"


def new_secret(prefix: str) -> str:
    """A random credential: ``prefix`` + 43 URL-safe characters (256 bits)."""
    return prefix + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """SHA-256 hex. Enough for 256-bit random secrets (no dictionary to attack, so no KDF)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def display_prefix(secret: str) -> str:
    """What lists show of a secret: its prefix and a few characters, never enough to use it."""
    return secret[:10]


def constant_time_equals(a: str | bytes, b: str | bytes) -> bool:
    a_b = a.encode() if isinstance(a, str) else a
    b_b = b.encode() if isinstance(b, str) else b
    return hmac.compare_digest(a_b, b_b)
