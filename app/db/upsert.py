"""INSERT ... ON CONFLICT DO UPDATE for SQLite and PostgreSQL alike."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase


async def upsert(
    session: AsyncSession,
    model: type[DeclarativeBase],
    rows: Sequence[dict[str, Any]],
    conflict: Sequence[str],
    update: Sequence[str],
) -> None:
    if not rows:
        return
    dialect = session.bind.dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(model).values(list(rows))
    stmt = stmt.on_conflict_do_update(
        index_elements=list(conflict),
        set_={name: getattr(stmt.excluded, name) for name in update},
    )
    await session.execute(stmt)


async def insert_ignore(
    session: AsyncSession,
    model: type[DeclarativeBase],
    row: dict[str, Any],
    conflict: Sequence[str],
) -> bool:
    """Insert once; ``False`` if a row with the same ``conflict`` columns exists already."""
    dialect = session.bind.dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(model).values(**row).on_conflict_do_nothing(index_elements=list(conflict))
    result = await session.execute(stmt)
    return bool(result.rowcount)  # type: ignore[attr-defined]
