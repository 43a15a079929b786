"""uvicorn vs granian for the bare Litestar endpoint (L) and a single-item consume, alternating.

A one-off question (is the HTTP server the lever for targets 1 and 3?). granian is not a dependency:

    .uv/bin/uv pip install --python .venv/bin/python granian   # temporarily
    .venv/bin/python benchmarks/server_compare.py
    .uv/bin/uv sync --frozen                                    # back to the locked set

Same flags as benchmarks/meter.py (1 worker, uvloop, no access log), wrk -t 1 -c 64 -d 8s, a private
Redis with AOF off, a team org with unlimited errors and spike protection off.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.infra.embedded_redis import EmbeddedRedis, free_port  # noqa: E402

TOKEN = "bench-admin-token-0123456789abcdef"


def start(
    tmp: Path, redis_url: str, server: str, target: str, factory: bool = False
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {
        **os.environ,
        "TOLLGATE_DATA_DIR": str(tmp / f"d{port}"),
        "TOLLGATE_ADMIN_TOKEN": TOKEN,
        "TOLLGATE_LOG_LEVEL": "WARNING",
        "TOLLGATE_REDIS__URL": redis_url,
        "TOLLGATE_WORKER__EMBEDDED": "false",
        "TOLLGATE_METER__FLUSH_INTERVAL": "3600",
        "PYTHONPATH": f"{ROOT / 'benchmarks'}:{ROOT}",
    }
    common = ["--port", str(port), "--workers", "1", "--loop", "uvloop", "--log-level", "warning"]
    if server == "uvicorn":
        cmd = [sys.executable, "-m", "uvicorn", target, *common, "--no-access-log", "--http", "httptools"]
        cmd += ["--factory"] if factory else []
    else:
        cmd = [str(Path(sys.executable).parent / "granian"), "--interface", "asgi", *common, "--no-ws"]
        cmd += [*(["--factory"] if factory else []), target]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    path = "/bare" if factory else "/ready"
    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{port}{path}").status_code == 200:
                return proc, port
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{server} did not start")


def wrk(tmp: Path, port: int, path: str, body: str | None = None) -> float:
    args: list[str] = []
    if body:
        script = tmp / "consume.lua"
        script.write_text(
            f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
            f'wrk.headers["Authorization"] = "Bearer {TOKEN}"\n'
        )
        args = ["-s", str(script)]
    cmd = ["wrk", "-t", "1", "-c", "64", "-d", "8s", *args, f"http://127.0.0.1:{port}{path}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return float(next(line for line in out.splitlines() if line.startswith("Requests/sec")).split()[1])


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="tollgate-servers-"))
    redis = EmbeddedRedis(tmp / "redis", appendonly=False).start()
    try:
        for _ in range(2):
            for server in ("uvicorn", "granian"):
                proc, port = start(tmp, redis.url, server, "meter:create_bare", factory=True)
                bare = wrk(tmp, port, "/bare")
                proc.terminate()
                proc.wait()
                proc, port = start(tmp, redis.url, server, "app.asgi:app")
                base, auth = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {TOKEN}"}
                org = httpx.post(f"{base}/v1/organizations", json={"name": "b", "plan": "team"}, headers=auth)
                org_id = org.json()["id"]
                change = {"overrides": {"quotas": {"error": None}}, "spike_protection": False}
                httpx.patch(f"{base}/v1/organizations/{org_id}", json=change, headers=auth).raise_for_status()
                item = {"category": "error", "quantity": 1}
                body = json.dumps({"organization_id": org_id, "items": [item]})
                consume = wrk(tmp, port, "/v1/quotas/consume", body)
                proc.terminate()
                proc.wait()
                ratio = consume / bare
                print(f"{server}: L {bare:.0f} req/s, consume {consume:.0f} req/s, consume/L {ratio:.2f}")
    finally:
        redis.stop()


if __name__ == "__main__":
    main()
