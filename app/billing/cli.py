"""``tollgate stripe ...``: operator commands for Stripe billing."""

from __future__ import annotations

import asyncio
import json

import msgspec
import typer

from app.settings import Settings

stripe_cli = typer.Typer(help="Stripe billing.", no_args_is_help=True)


@stripe_cli.command("sync")
def sync() -> None:
    """Create or update Stripe Products, Prices (by lookup key) and the on-demand billing meter
    from the plan catalog. Idempotent: a second run reports everything unchanged."""
    from app.billing.services import CatalogSync
    from app.billing.stripe_client import StripeGateway
    from app.errors import TollgateError
    from app.main import load_plans

    settings = Settings()
    sync = CatalogSync(load_plans(settings), StripeGateway(settings.stripe), settings.stripe)
    try:
        report = asyncio.run(sync.run())
    except TollgateError as exc:
        typer.echo(f"error: {exc.code}: {exc.detail}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(json.dumps(msgspec.to_builtins(report), indent=2))
    typer.echo(f"{report.changed} change(s)", err=True)
