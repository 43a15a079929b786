"""Per-app marketplace objects, built on first use and kept on ``app.state`` (no module globals:
tests run several apps with different settings in one process)."""

from __future__ import annotations

from litestar.datastructures import State

from app.context import AppContext
from app.marketplace.credentials import MarketplaceSecrets, load_secrets
from app.marketplace.heroku import HerokuAddon


def marketplace_secrets(state: State) -> MarketplaceSecrets:
    cached: MarketplaceSecrets | None = state.get("marketplace_secrets")
    if cached is None:
        ctx: AppContext = state.ctx
        cached = load_secrets(ctx.settings)  # a small file read, once per process
        state.marketplace_secrets = cached
    return cached


def provide_heroku(state: State) -> HerokuAddon:
    addon: HerokuAddon | None = state.get("heroku_addon")
    if addon is None:
        ctx: AppContext = state.ctx
        addon = HerokuAddon(ctx.settings, marketplace_secrets(state), ctx.catalog.names())
        state.heroku_addon = addon
    return addon
