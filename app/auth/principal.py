"""The authenticated caller and the one tenant-scoping rule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from uuid import UUID

from app.auth.errors import ScopeRequired

Scope = Literal["admin", "ingest", "org"]
SERVICE_SCOPES: tuple[str, ...] = ("admin", "ingest")


@dataclass(frozen=True, slots=True)
class Principal:
    scope: Scope
    name: str
    organization_id: UUID | None = None
    """Set for org API keys: the only org this caller may see."""

    @property
    def is_admin(self) -> bool:
        return self.scope == "admin"

    def can_access(self, organization_id: UUID) -> bool:
        """Tenant scoping: admins see every org, org keys only their own."""
        return self.scope == "admin" or (self.scope == "org" and self.organization_id == organization_id)

    def require(self, *scopes: Scope) -> None:
        if self.scope not in scopes:
            raise ScopeRequired(f"This needs one of: {', '.join(scopes)} (you are {self.scope}).")

    @property
    def actor(self) -> str:
        return f"{self.scope}:{self.name}"
