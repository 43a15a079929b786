"""merge billing marketplace entitlements

Revision ID: 0005_merge
Revises: 0003_marketplace, 0002_billing, 0004_entitlements
Create Date: 2026-11-25 07:54:47.598146+00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from advanced_alchemy.types import GUID, DateTimeUTC, JsonB
from alembic import op
from sqlalchemy import Text  # noqa: F401  (used by rendered JSON variants)


sa.GUID = GUID  # type: ignore[attr-defined]
sa.DateTimeUTC = DateTimeUTC  # type: ignore[attr-defined]
sa.JsonB = JsonB  # type: ignore[attr-defined]

revision = '0005_merge'
down_revision = ('0003_marketplace', '0002_billing', '0004_entitlements')
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
