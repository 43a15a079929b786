"""Marketplace secrets: from settings, or generated once and kept under ``data_dir``.

On embedded defaults nobody configures the Heroku password, SSO salt, token-encryption key or
session key. They are generated on first use and written to ``<data_dir>/marketplace-secrets.json``
(mode 0600, under a file lock so concurrent processes agree), so the manifest generator and the
running API present the same credentials across restarts. A value set in settings always wins.

Stored OAuth tokens and the config vars handed to the marketplace (they carry an org API key) are
encrypted with Fernet (AES-128-CBC + HMAC-SHA256, from ``cryptography``). We encrypt explicitly in
the service rather than with ``advanced_alchemy.types.EncryptedString`` because that type binds its
key when the model class is defined, while Tollgate's key comes from per-app ``Settings`` (tests run
several apps with different keys in one process). ``token_key`` may list several keys separated by
commas: the first encrypts, all decrypt (rotation).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretStr

from app.marketplace.errors import TokensUnreadable
from app.settings import Settings

SECRETS_FILE = "marketplace-secrets.json"


@dataclass(frozen=True, slots=True)
class MarketplaceSecrets:
    heroku_password: str
    heroku_sso_salt: str
    token_key: str
    session_key: str
    generated: frozenset[str]
    """Names of the values that came from the secrets file rather than settings."""


def _generate(name: str) -> str:
    if name == "token_key":
        return Fernet.generate_key().decode()
    # 32 characters, as `heroku addons:admin:manifest:generate` makes them
    return secrets.token_urlsafe(24)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _load_or_create(path: Path, names: list[str]) -> dict[str, str]:
    with _locked(path):
        stored: dict[str, Any] = {}
        if path.exists():
            stored = json.loads(path.read_text() or "{}")
        missing = [n for n in names if not isinstance(stored.get(n), str) or not stored[n]]
        if missing:
            stored.update({n: _generate(n) for n in missing})
            tmp = path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump(stored, fh, indent=2)
            os.replace(tmp, path)
        os.chmod(path, 0o600)
        return {n: str(stored[n]) for n in names}


def load_secrets(settings: Settings) -> MarketplaceSecrets:
    """The effective marketplace secrets (blocking file I/O the first time; cache the result)."""
    heroku = settings.marketplace.heroku
    configured: dict[str, SecretStr | None] = {
        "heroku_password": heroku.password,
        "heroku_sso_salt": heroku.sso_salt,
        "token_key": heroku.token_key,
        "session_key": settings.marketplace.session_key,
    }
    missing = [name for name, value in configured.items() if value is None or not value.get_secret_value()]
    stored = _load_or_create(settings.data_dir / SECRETS_FILE, missing) if missing else {}
    values = {
        name: stored[name] if name in stored else value.get_secret_value()  # type: ignore[union-attr]
        for name, value in configured.items()
    }
    return MarketplaceSecrets(**values, generated=frozenset(stored))


class TokenVault:
    """Encrypts small secrets for storage (OAuth tokens, grant codes, returned config vars)."""

    def __init__(self, key_material: str) -> None:
        keys = [k.strip() for k in key_material.split(",") if k.strip()]
        if not keys:
            raise ValueError("token key must not be empty")
        self._fernet = MultiFernet([Fernet(_fernet_key(k)) for k in keys])

    def encrypt(self, value: str) -> str:
        return self._fernet.encrypt(value.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise TokensUnreadable from exc

    def encrypt_json(self, value: dict[str, Any]) -> str:
        return self.encrypt(json.dumps(value, separators=(",", ":"), sort_keys=True))

    def decrypt_json(self, token: str) -> dict[str, Any]:
        return json.loads(self.decrypt(token))  # type: ignore[no-any-return]


def _fernet_key(material: str) -> bytes:
    """A Fernet key as given, or one derived from any passphrase (SHA-256, domain-separated)."""
    raw = material.encode()
    with contextlib.suppress(ValueError):
        if len(base64.urlsafe_b64decode(raw)) == 32:
            return raw
    return base64.urlsafe_b64encode(hashlib.sha256(b"tollgate-marketplace-tokens:" + raw).digest())
