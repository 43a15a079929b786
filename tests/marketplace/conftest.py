"""Fixtures that play Heroku: a configured app wired to a stand-in Heroku on 127.0.0.1, and helpers
that build the requests Heroku sends (Basic auth, provision bodies, SSO form posts)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from app.marketplace.credentials import load_secrets
from app.marketplace.heroku import resource_token, user_scoped_resource_token, v1_token
from tests.marketplace.fake_heroku import FakeHeroku

PASSWORD = "heroku-test-password-0123456789ab"
SALT = "heroku-test-sso-salt-0123456789ab"
CLIENT_SECRET = "heroku-test-oauth-client-secret"
ADDONS_JSON = "application/vnd.heroku-addons+json; version=3"


@dataclass
class Heroku:
    """One app as Heroku sees it: its HTTP client and the credentials from its manifest."""

    client: AsyncTestClient[Any]
    addon_id: str
    password: str
    salt: str
    fake: FakeHeroku | None = None

    def auth(self, password: str | None = None, user: str | None = None) -> dict[str, str]:
        raw = f"{user or self.addon_id}:{password or self.password}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode(), "Accept": ADDONS_JSON}

    async def provision(
        self, plan: str = "team", *, grant: bool = False, **extra: Any
    ) -> tuple[dict[str, Any], Any]:
        body = provision_body(plan, **extra)
        if grant:
            assert self.fake is not None
            body["oauth_grant"] = self.fake.grant_for(body["uuid"])
        resp = await self.client.post("/marketplace/heroku/resources", json=body, headers=self.auth())
        return body, resp

    def sso(
        self, resource_uuid: str, *, ts: int | None = None, kind: str = "user_scoped", **over: str
    ) -> dict[str, str]:
        return sso_form(resource_uuid, self.salt, ts=ts, kind=kind, **over)

    async def post_sso(self, form: dict[str, str]) -> Any:
        return await self.client.post(
            "/marketplace/heroku/sso",
            content="&".join(f"{k}={_q(v)}" for k, v in form.items()),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            follow_redirects=False,
        )


def _q(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def provision_body(plan: str = "team", **extra: Any) -> dict[str, Any]:
    """A v3 provision body as Heroku sends it (its uuid is new each time)."""
    addon = str(uuid.uuid4())
    body: dict[str, Any] = {
        "callback_url": f"https://api.heroku.com/addons/{addon}",
        "name": f"acme-inc-{addon[:8]}",
        "options": {"foo": "bar", "baz": "true"},
        "plan": plan,
        "region": "amazon-web-services::us-east-1",
        "uuid": addon,
        "log_input_url": f"https://token:t.{addon}@1.us.logplex.io/logs",
    }
    body.update(extra)
    return body


USER_ID = "aaaaaaaa-0000-0000-0000-000000000001"
EMAIL = "user@example.com"


def sso_form(
    resource_uuid: str, salt: str, *, ts: int | None = None, kind: str = "user_scoped", **over: str
) -> dict[str, str]:
    stamp = str(int(time.time()) if ts is None else ts)
    form = {
        "resource_id": resource_uuid,
        "timestamp": stamp,
        "email": EMAIL,
        "user_id": USER_ID,
        "app": "acme-inc",
        "context_app": "acme-inc",
        "nav-data": "abc",
    }
    if kind == "user_scoped":
        form["user_scoped_resource_token"] = user_scoped_resource_token(
            resource_uuid, salt, stamp, USER_ID, EMAIL
        )
        form["resource_token"] = "0" * 40  # ignored: the user-scoped token is preferred
    elif kind == "resource":
        form["resource_token"] = resource_token(resource_uuid, salt, stamp)
    elif kind == "v1":
        form.pop("resource_id")
        form["id"] = resource_uuid
        form["token"] = v1_token(resource_uuid, salt, stamp)
    form.update(over)
    return form


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="session")
async def fake_heroku() -> AsyncIterator[FakeHeroku]:
    fake = await FakeHeroku(CLIENT_SECRET).start()
    yield fake
    await fake.stop()


@pytest.fixture(scope="session")
async def heroku(make_client: Any, fake_heroku: FakeHeroku) -> AsyncIterator[Heroku]:
    """The app configured as a real deployment would be (SQLite), talking to the stand-in Heroku.
    ``team-async`` is a plan marked async; ``legacy`` maps to Tollgate's ``business``."""
    prefix = "TOLLGATE_MARKETPLACE__HEROKU__"
    env = {
        f"{prefix}PASSWORD": PASSWORD,
        f"{prefix}SSO_SALT": SALT,
        f"{prefix}OAUTH_CLIENT_SECRET": CLIENT_SECRET,
        f"{prefix}API_URL": fake_heroku.url,
        f"{prefix}OAUTH_TOKEN_URL": fake_heroku.url + "/oauth/token",
        f"{prefix}PLANS": json.dumps(
            {
                "free": "free",
                "team": "team",
                "business": "business",
                "team-async": "team",
                "legacy": "business",
            }
        ),
        f"{prefix}ASYNC_PLANS": json.dumps(["team-async"]),
    }
    with environment(env):  # read once, when the app's Settings are built on entering
        manager = make_client()
        client = await manager.__aenter__()
    try:
        yield Heroku(client, "tollgate", PASSWORD, SALT, fake_heroku)
    finally:
        await manager.__aexit__(None, None, None)


def heroku_for(client: AsyncTestClient[Any]) -> Heroku:
    """Heroku's view of an app on embedded defaults: credentials generated once and kept."""
    settings = client.app.state.ctx.settings
    secrets = load_secrets(settings)
    return Heroku(client, settings.marketplace.heroku.id, secrets.heroku_password, secrets.heroku_sso_salt)
