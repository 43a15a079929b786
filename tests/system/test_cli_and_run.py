"""The operator's commands, run as a user runs them: the `tollgate` console script."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from app.infra.embedded_redis import free_port

TOLLGATE = str(Path(sys.executable).parent / "tollgate")


def env_for(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOLLGATE_")}
    env.update({"TOLLGATE_DATA_DIR": str(data_dir), "TOLLGATE_LOG_LEVEL": "WARNING", **extra})
    return env


def tollgate(data_dir: Path, *args: str) -> dict | list:  # type: ignore[type-arg]
    out = subprocess.run(
        [TOLLGATE, *args], env=env_for(data_dir), capture_output=True, text=True, timeout=60, check=True
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_cli_creates_tokens_and_orgs(tmp_path: Path) -> None:
    token = tollgate(tmp_path, "token", "create", "relay", "--scope", "ingest")
    assert isinstance(token, dict) and token["scope"] == "ingest"
    assert token["secret"].startswith("tgs_")
    listed = tollgate(tmp_path, "token", "list")
    assert [t["name"] for t in listed] == ["relay"]  # type: ignore[index]
    assert token["secret"] not in json.dumps(listed)
    org = tollgate(tmp_path, "org", "create", "Acme Inc", "--plan", "team")
    assert isinstance(org, dict) and org["plan"] == "team" and org["slug"] == "acme-inc"
    assert org["api_key"].startswith("tgk_")
    revoked = tollgate(tmp_path, "token", "revoke", token["id"])
    assert isinstance(revoked, dict) and revoked["revoked_at"] != "None"
    assert tollgate(tmp_path, "token", "list") == []
    plans = tollgate(tmp_path, "plans")
    assert [p["name"] for p in plans] == ["free", "team", "business", "enterprise"]  # type: ignore[index]


def test_cli_refuses_a_bad_scope_without_a_traceback(tmp_path: Path) -> None:
    out = subprocess.run(
        [TOLLGATE, "token", "create", "x", "--scope", "root"],
        env=env_for(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert "scope must be one of" in out.stderr + out.stdout


def _serve(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [TOLLGATE, "run", "--port", str(port)],
        env=env_for(data_dir, TOLLGATE_ADMIN_TOKEN="operator-secret-token"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def _wait_healthy(base: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return time.monotonic() - start
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    pytest.fail("service did not become healthy")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


@pytest.mark.slow
def test_run_serves_on_embedded_defaults_and_keeps_data_across_restarts(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": "Bearer operator-secret-token"}
    proc = _serve(tmp_path, port)
    try:
        assert _wait_healthy(base, proc) < 60
        assert httpx.get(f"{base}/ready").json()["status"] == "ready"
        org = httpx.post(f"{base}/v1/organizations", json={"name": "Persist"}, headers=headers).json()
        consumed = httpx.post(
            f"{base}/v1/quotas/consume",
            headers=headers,
            json={"organization_id": org["id"], "items": [{"category": "error", "quantity": 42}]},
        )
        assert consumed.json()["accepted"] is True
    finally:
        _stop(proc)
    assert (tmp_path / "tollgate.db").exists()
    assert (tmp_path / "redis" / "appendonly.aof").exists() or any((tmp_path / "redis").glob("appendonly*"))
    # the private redis-server went away with the service
    assert subprocess.run(["pgrep", "-f", f"redis-server.*{tmp_path}"], capture_output=True).returncode != 0

    proc = _serve(tmp_path, port)
    try:
        _wait_healthy(base, proc)
        again = httpx.get(f"{base}/v1/organizations/{org['id']}", headers=headers)
        assert again.status_code == 200 and again.json()["name"] == "Persist"
        usage = httpx.get(f"{base}/v1/organizations/{org['id']}/usage", headers=headers).json()
        error = next(c for c in usage["categories"] if c["category"] == "error")
        assert error["used"] == 42
    finally:
        _stop(proc)
