"""A stand-in Heroku on 127.0.0.1 (aiohttp): the OAuth token endpoint and the two Platform API calls
an add-on provider makes. It checks what real Heroku checks -- the client secret and grant code, the
bearer token's add-on, the Accept header, the body shape -- and records every call for assertions."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

PLATFORM_ACCEPT = "application/vnd.heroku+json; version=3"


@dataclass
class Call:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    status: int
    addon: str | None


@dataclass
class FakeHeroku:
    client_secret: str
    calls: list[Call] = field(default_factory=list)
    grants: dict[str, str] = field(default_factory=dict)
    """grant code -> add-on uuid (each code is good once)."""
    tokens: dict[str, str] = field(default_factory=dict)
    """access token -> add-on uuid."""
    addons: dict[str, dict[str, Any]] = field(default_factory=dict)
    url: str = ""
    _runner: web.AppRunner | None = None

    def grant_for(self, addon_uuid: str) -> dict[str, str]:
        code = secrets.token_hex(16)
        self.grants[code] = addon_uuid
        self.addons.setdefault(addon_uuid, {"state": "provisioning", "config": {}})
        return {"code": code, "expires_at": "2099-01-01T00:00:00+00:00", "type": "authorization_code"}

    def calls_for(self, addon_uuid: str) -> list[Call]:
        return [c for c in self.calls if c.addon == addon_uuid]

    # -- server
    async def start(self) -> FakeHeroku:
        app = web.Application()
        app.router.add_post("/oauth/token", self._token)
        app.router.add_patch("/addons/{addon}/config", self._config)
        app.router.add_post("/addons/{addon}/actions/provision", self._provision)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _record(self, request: web.Request, body: Any, status: int, addon: str | None = None) -> None:
        addon = addon or request.match_info.get("addon")
        self.calls.append(Call(request.method, request.path, dict(request.headers), body, status, addon))

    @staticmethod
    def _error(status: int, ident: str) -> web.Response:
        return web.json_response({"id": ident, "message": ident}, status=status)

    async def _token(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        recorded = dict(form)
        if form.get("client_secret") != self.client_secret:
            self._record(request, recorded, 401)
            return self._error(401, "unauthorized")
        if form.get("grant_type") == "authorization_code":
            addon = self.grants.pop(form.get("code", ""), None)
        elif form.get("grant_type") == "refresh_token":
            addon = next((a for t, a in self.tokens.items() if f"r-{t}" == form.get("refresh_token")), None)
        else:
            addon = None
        if addon is None:
            self._record(request, recorded, 400)
            return self._error(400, "invalid_grant")
        access = secrets.token_hex(16)
        self.tokens[access] = addon
        self._record(request, recorded, 200, addon)
        return web.json_response(
            {
                "access_token": access,
                "expires_in": 28799,
                "refresh_token": f"r-{access}",
                "token_type": "Bearer",
                "user_id": "aaaaaaaa-0000-0000-0000-000000000001",
                "session_nonce": None,
            }
        )

    def _authorized(self, request: web.Request) -> str | None:
        """The add-on this call may touch: a bearer token issued for it, and Heroku's Accept."""
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ") if header.startswith("Bearer ") else ""
        addon = request.match_info["addon"]
        if self.tokens.get(token) != addon or request.headers.get("Accept") != PLATFORM_ACCEPT:
            return None
        return addon

    async def _config(self, request: web.Request) -> web.Response:
        body = await request.json()
        addon = self._authorized(request)
        if addon is None:
            self._record(request, body, 403)
            return self._error(403, "forbidden")
        items = body.get("config") if isinstance(body, dict) else None
        if not isinstance(items, list) or not all(
            isinstance(i, dict) and set(i) == {"name", "value"} and isinstance(i["value"], str) for i in items
        ):
            self._record(request, body, 422)
            return self._error(422, "invalid_params")
        self.addons[addon]["config"].update({i["name"]: i["value"] for i in items})
        self._record(request, body, 200)
        return web.json_response(items)

    async def _provision(self, request: web.Request) -> web.Response:
        addon = self._authorized(request)
        if addon is None:
            self._record(request, None, 403)
            return self._error(403, "forbidden")
        self.addons[addon]["state"] = "provisioned"
        self._record(request, None, 200)
        return web.json_response({"id": addon, "state": "provisioned"})
