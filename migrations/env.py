"""Alembic environment (async). The database URL comes from Tollgate's Settings, or from
``config.attributes["url"]`` when Tollgate runs migrations itself (CLI, startup, tests)."""

from __future__ import annotations

import asyncio

from advanced_alchemy.types import GUID, DateTimeUTC
from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from app.db.models import metadata

config = context.config


def _url() -> str:
    url = config.attributes.get("url")
    if url:
        return str(url)
    from app.settings import Settings

    return Settings().database_url


def _compare_type(ctx, inspected_col, metadata_col, inspected_type, metadata_type):  # type: ignore[no-untyped-def]
    """advanced-alchemy's GUID/DateTimeUTC reflect as their storage type (BINARY(16), DATETIME):
    not a change. Every other type uses Alembic's default comparison."""
    if isinstance(metadata_type, GUID | DateTimeUTC):
        return False
    return None


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        compare_type=_compare_type,
        render_as_batch=True,  # SQLite can only ALTER through table copies
        user_module_prefix="sa.",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    context.configure(url=_url(), target_metadata=metadata, literal_binds=True,
                      render_as_batch=True, user_module_prefix="sa.")
    with context.begin_transaction():
        context.run_migrations()


async def run_online() -> None:
    engine = create_async_engine(_url())
    async with engine.connect() as conn:
        await conn.run_sync(_configure)
        await conn.commit()
    await engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    asyncio.run(run_online())
