"""Authentication and the service-token lifecycle."""

from __future__ import annotations

import time
from datetime import datetime
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.errors import InvalidCredentials, MissingCredentials
from app.auth.principal import SERVICE_SCOPES, Principal
from app.auth.repositories import ServiceTokenRepository
from app.db.models import ApiKey, ServiceToken
from app.errors import InvalidInput, NotFound
from app.security import (
    ORG_KEY_PREFIX,
    SERVICE_TOKEN_PREFIX,
    constant_time_equals,
    display_prefix,
    hash_secret,
    new_secret,
)
from app.settings import Settings


class Authenticator:
    """Resolves ``Authorization: Bearer`` to a :class:`Principal`.

    Lookups are by SHA-256 of the secret and cached in-process for ``cache_seconds`` so the ingest
    hot path does not touch the database; a revocation made through this process applies at once,
    one made elsewhere within ``cache_seconds``.
    """

    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        cache_seconds: float = 10.0,
    ) -> None:
        self._admin = settings.admin_token
        self._sessions = sessions
        self._ttl = cache_seconds
        self._cache: dict[str, tuple[Principal | None, float]] = {}

    async def authenticate(self, header: str | None) -> Principal:
        if not header:
            raise MissingCredentials
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or len(token) > 200:
            raise InvalidCredentials
        if self._admin is not None and constant_time_equals(token, self._admin.get_secret_value()):
            return Principal("admin", "bootstrap")
        digest = hash_secret(token)
        hit = self._cache.get(digest)
        now = time.monotonic()
        if hit is not None and hit[1] > now:
            principal = hit[0]
        else:
            principal = await self._lookup(token, digest)
            if len(self._cache) > 50_000:
                self._cache.clear()
            self._cache[digest] = (principal, now + self._ttl)
        if principal is None:
            raise InvalidCredentials
        return principal

    async def _lookup(self, token: str, digest: str) -> Principal | None:
        async with self._sessions() as session:
            if token.startswith(SERVICE_TOKEN_PREFIX):
                st = await session.scalar(
                    select(ServiceToken).where(
                        ServiceToken.token_hash == digest, ServiceToken.revoked_at.is_(None)
                    )
                )
                if st is not None and constant_time_equals(st.token_hash, digest):
                    return Principal(st.scope, st.name)  # type: ignore[arg-type]
            elif token.startswith(ORG_KEY_PREFIX):
                key = await session.scalar(
                    select(ApiKey).where(ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None))
                )
                if key is not None and constant_time_equals(key.key_hash, digest):
                    return Principal("org", key.name, key.organization_id)
        return None

    def forget(self, digest: str) -> None:
        self._cache.pop(digest, None)


class ServiceTokenService:
    def __init__(self, session: AsyncSession, auth: Authenticator | None = None) -> None:
        self.session = session
        self.repo = ServiceTokenRepository(session=session)
        self.auth = auth

    async def create(self, name: str, scope: str) -> tuple[ServiceToken, str]:
        """Create a token; the secret is returned once and never stored."""
        if scope not in SERVICE_SCOPES:
            raise InvalidInput(f"scope must be one of {', '.join(SERVICE_SCOPES)}")
        if not name.strip():
            raise InvalidInput("name must not be empty")
        secret = new_secret(SERVICE_TOKEN_PREFIX)
        token = ServiceToken(
            name=name.strip(),
            scope=scope,
            prefix=display_prefix(secret),
            token_hash=hash_secret(secret),
        )
        await self.repo.add(token)
        await self.session.commit()
        return token, secret

    async def list(self) -> list[ServiceToken]:
        return list(await self.repo.get_many(ServiceToken.revoked_at.is_(None)))

    async def revoke(self, token_id: UUID, now: datetime) -> ServiceToken:
        token = await self.repo.get_one_or_none(id=token_id)
        if token is None:
            raise NotFound("No such service token.")
        if token.revoked_at is None:
            token.revoked_at = now
            await self.session.commit()
        if self.auth is not None:
            self.auth.forget(token.token_hash)
        return token
