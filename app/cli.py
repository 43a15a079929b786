"""Operator commands: ``tollgate run | db upgrade | token create | org create | plans``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import msgspec
import typer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.settings import Settings

cli = typer.Typer(help="Tollgate: billing and quota service.", no_args_is_help=True)
db_cli = typer.Typer(help="Database migrations.", no_args_is_help=True)
token_cli = typer.Typer(help="Scoped service tokens (admin, ingest).", no_args_is_help=True)
org_cli = typer.Typer(help="Organizations.", no_args_is_help=True)
cli.add_typer(db_cli, name="db")
cli.add_typer(token_cli, name="token")
cli.add_typer(org_cli, name="org")

from app.marketplace.cli import marketplace_cli  # noqa: E402

cli.add_typer(marketplace_cli, name="marketplace")

from app.billing.cli import stripe_cli  # noqa: E402

cli.add_typer(stripe_cli, name="stripe")

T = TypeVar("T")


def _echo(value: Any) -> None:
    typer.echo(json.dumps(msgspec.to_builtins(value), indent=2, default=str))


def _with_session(fn: Callable[[AsyncSession, Settings], Awaitable[T]]) -> T:
    """Run ``fn`` with a session on the configured database (migrated first)."""
    from app.db.migrate import upgrade_async
    from app.main import create_engine

    settings = Settings()

    async def main() -> T:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        await upgrade_async(settings.database_url)
        engine = create_engine(settings)
        try:
            async with async_sessionmaker(engine, expire_on_commit=False)() as session:
                return await fn(session, settings)
        finally:
            await engine.dispose()

    return asyncio.run(main())


@cli.command()
def run(
    host: Annotated[str | None, typer.Option(help="Bind address")] = None,
    port: Annotated[int | None, typer.Option(help="Port")] = None,
) -> None:
    """Serve the API (embedded SQLite + private Redis unless configured otherwise)."""
    import uvicorn

    settings = Settings()
    uvicorn.run(
        "app.asgi:app",
        host=host or settings.server.host,
        port=port or settings.server.port,
        log_level="warning",
        workers=settings.server.workers,
        proxy_headers=True,
    )


@cli.command()
def worker() -> None:
    """Run the background job worker (production shape; the API then sets
    TOLLGATE_WORKER__EMBEDDED=false)."""
    from app.main import create_app

    settings = Settings()
    settings.worker.embedded = True  # this process *is* the worker
    app = create_app(settings)

    async def main() -> None:
        async with app.lifespan():
            await asyncio.Event().wait()

    asyncio.run(main())


@db_cli.command("upgrade")
def db_upgrade(revision: str = "heads") -> None:
    """Apply migrations (``alembic upgrade``)."""
    from app.db.migrate import upgrade

    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url, revision)
    typer.echo(f"database at {revision}")


@token_cli.command("create")
def token_create(name: str, scope: Annotated[str, typer.Option(help="admin or ingest")] = "ingest") -> None:
    """Create a service token; its secret is printed once."""
    from app.auth.services import ServiceTokenService

    async def go(session: AsyncSession, _: Settings) -> dict[str, Any]:
        token, secret = await ServiceTokenService(session).create(name, scope)
        return {"id": str(token.id), "name": token.name, "scope": token.scope, "secret": secret}

    _echo(_with_session(go))


@token_cli.command("revoke")
def token_revoke(token_id: str) -> None:
    """Revoke a service token (API processes drop it from their cache within 10 s)."""
    from uuid import UUID

    from app.auth.services import ServiceTokenService
    from app.clock import Clock

    async def go(session: AsyncSession, _: Settings) -> dict[str, Any]:
        token = await ServiceTokenService(session).revoke(UUID(token_id), Clock().now())
        return {"id": str(token.id), "revoked_at": str(token.revoked_at)}

    _echo(_with_session(go))


@token_cli.command("list")
def token_list() -> None:
    """List active service tokens (prefixes only)."""
    from app.auth.services import ServiceTokenService

    async def go(session: AsyncSession, _: Settings) -> list[dict[str, Any]]:
        return [
            {"id": str(t.id), "name": t.name, "scope": t.scope, "prefix": t.prefix}
            for t in await ServiceTokenService(session).list()
        ]

    _echo(_with_session(go))


@org_cli.command("create")
def org_create(
    name: str,
    plan: Annotated[str | None, typer.Option()] = None,
    slug: Annotated[str | None, typer.Option()] = None,
    with_key: Annotated[bool, typer.Option(help="Also create an API key")] = True,
) -> None:
    """Create an organization (and an org API key, printed once)."""
    from app.orgs.schemas import OrganizationCreate
    from app.orgs.services import ApiKeyService, OrganizationService

    async def go(session: AsyncSession, settings: Settings) -> dict[str, Any]:
        ctx = _offline_context(session, settings)
        service = OrganizationService(session, ctx)
        org = await service.create(OrganizationCreate(name=name, slug=slug, plan=plan), "cli")
        out: dict[str, Any] = msgspec.to_builtins(service.to_schema(org))
        if with_key:
            _, secret = await ApiKeyService(session, ctx).create(org, "default", "cli")
            out["api_key"] = secret
        return out

    _echo(_with_session(go))


@cli.command()
def plans() -> None:
    """Print the plan catalog."""
    from app.main import load_plans

    catalog = load_plans(Settings())
    _echo([catalog.current(n).as_dict() for n in catalog.names()])


class _NoMeter:
    """The CLI writes the database only; the API loads the new org's config on first use."""

    async def publish(self, *_: Any, **__: Any) -> None:
        return None

    async def reset_spike(self, *_: Any) -> None:
        return None


def _offline_context(session: AsyncSession, settings: Settings) -> Any:
    from app.auth.services import Authenticator
    from app.clock import Clock
    from app.context import AppContext
    from app.main import load_plans

    sessions: async_sessionmaker[AsyncSession] = async_sessionmaker(session.bind)
    return AppContext(
        settings=settings,
        catalog=load_plans(settings),
        clock=Clock(),
        sessions=sessions,
        redis=None,
        meter=_NoMeter(),  # type: ignore[arg-type]
        auth=Authenticator(settings, sessions),
    )


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
