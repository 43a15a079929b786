"""``tollgate marketplace ...``: operator commands for marketplace add-ons."""

from __future__ import annotations

import json

import typer

marketplace_cli = typer.Typer(help="Marketplace add-ons (Heroku first).", no_args_is_help=True)


@marketplace_cli.command("heroku-manifest")
def heroku_manifest() -> None:
    """Print this deployment's Heroku add-on manifest (addon-manifest.json) from settings.

    Unset credentials are generated once and kept in <data_dir>/marketplace-secrets.json, so the
    running API accepts exactly what this prints."""
    from app.marketplace.credentials import load_secrets
    from app.marketplace.heroku import HerokuAddon
    from app.settings import Settings

    settings = Settings()
    typer.echo(json.dumps(HerokuAddon(settings, load_secrets(settings)).manifest(), indent=2))
