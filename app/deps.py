"""Litestar dependencies shared by every controller."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from litestar import Request
from litestar.datastructures import State
from litestar.di import Provide
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.principal import Principal
from app.context import AppContext


def provide_ctx(state: State) -> AppContext:
    ctx: AppContext = state.ctx
    return ctx


async def provide_session(state: State) -> AsyncGenerator[AsyncSession, None]:
    ctx: AppContext = state.ctx
    async with ctx.sessions() as session:
        yield session


async def provide_principal(request: Request) -> Principal:  # type: ignore[type-arg]
    ctx: AppContext = request.app.state.ctx
    return await ctx.auth.authenticate(request.headers.get("authorization"))


DEPENDENCIES = {
    "ctx": Provide(provide_ctx, sync_to_thread=False),
    "session": Provide(provide_session),
    "principal": Provide(provide_principal),
}
