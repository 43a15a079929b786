"""`tollgate marketplace heroku-manifest`, the credentials it generates once and keeps, and the SSO
token formulas checked against the published test vectors."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from app.cli import cli
from app.marketplace.heroku import resource_token, user_scoped_resource_token, v1_token
from tests.marketplace.conftest import Heroku

CONFIG_VAR = re.compile(r"^[A-Z][0-9A-Z_]+$")


def manifest(data_dir: Path, **env: str) -> dict[str, Any]:
    result = CliRunner().invoke(
        cli, ["marketplace", "heroku-manifest"], env={"TOLLGATE_DATA_DIR": str(data_dir), **env}
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_manifest_is_valid_and_its_credentials_are_generated_once(tmp_path: Path) -> None:
    env = {"TOLLGATE_SERVER__PUBLIC_URL": "https://billing.example.com", "TOLLGATE_SERVER__PORT": "9000"}
    first = manifest(tmp_path, **env)
    api = first["api"]
    assert first["id"] == "tollgate" and first["name"] == "Tollgate" and api["version"] == "3"
    assert api["config_vars_prefix"] == "TOLLGATE"
    assert api["config_vars"] == ["TOLLGATE_URL", "TOLLGATE_ORG_ID", "TOLLGATE_API_KEY"]
    assert all(CONFIG_VAR.match(v) and v.startswith("TOLLGATE_") for v in api["config_vars"])
    assert len(api["password"]) == 32 and len(api["sso_salt"]) == 32 and api["password"] != api["sso_salt"]
    assert "us" in api["regions"] and api["requires"] == []
    assert api["production"] == {
        "base_url": "https://billing.example.com/marketplace/heroku/resources",
        "sso_url": "https://billing.example.com/marketplace/heroku/sso",
    }
    assert api["test"] == {
        "base_url": "http://localhost:9000/marketplace/heroku/resources",
        "sso_url": "http://localhost:9000/marketplace/heroku/sso",
    }

    again = manifest(tmp_path, **env)
    assert again == first  # kept, not regenerated
    kept = tmp_path / "marketplace-secrets.json"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert manifest(tmp_path / "elsewhere")["api"]["password"] != api["password"]

    configured = manifest(
        tmp_path,
        TOLLGATE_MARKETPLACE__HEROKU__PASSWORD="configured-password",
        TOLLGATE_MARKETPLACE__HEROKU__ID="acme-metering",
        TOLLGATE_MARKETPLACE__HEROKU__CONFIG_VARS_PREFIX="ACME",
        TOLLGATE_MARKETPLACE__HEROKU__PLANS='{"hobby": "free"}',
    )
    assert configured["id"] == "acme-metering" and configured["api"]["password"] == "configured-password"
    assert configured["api"]["sso_salt"] == api["sso_salt"]
    assert configured["api"]["config_vars"] == ["ACME_URL", "ACME_ORG_ID", "ACME_API_KEY"]


async def test_the_running_app_accepts_what_the_manifest_prints(sqlite_client: Any) -> None:
    settings = sqlite_client.app.state.ctx.settings
    printed = manifest(settings.data_dir)
    heroku = Heroku(sqlite_client, printed["id"], printed["api"]["password"], printed["api"]["sso_salt"])
    body, resp = await heroku.provision("free")
    assert resp.status_code == 200, resp.text
    assert set(resp.json()["config"]) == set(printed["api"]["config_vars"])
    assert (await heroku.post_sso(heroku.sso(body["uuid"]))).status_code == 302


def test_sso_token_formulas_match_the_published_vectors() -> None:
    assert v1_token("123", "2f97bfa52ca102f8874716e2eb1d3b4920ad0be4", "1267597772") == (
        "bb466eb1d6bc345d11072c3cd25c311f21be130d"
    )
    assert v1_token("1", "SSO_SALT", "1262304000") == "b6010f6fbb850887a396c2bc0ab23974003008f6"
    assert resource_token("123", "salty", "567") == "8bcafa70e186a8f9b85a1c93f3b6b0507748ec7a"
    assert (
        user_scoped_resource_token(
            "01234567-89ab-cdef-0123-456789abcdef",
            "salty",
            "1267597772",
            "aaaaaaaa-0000-0000-0000-000000000001",
            "user@example.com",
        )
        == "951b851897578913e3ac89965bc9ffc53ab9bfa96e9d79c103d39329234647c3"
    )
