"""Feature check vs quota consume, over HTTP against a real server.

Starts Tollgate with uvicorn on 127.0.0.1 (embedded defaults: a SQLite file and a private Redis in a
temporary folder), creates one organization, then drives ``POST /v1/entitlements/check`` and
``POST /v1/quotas/consume`` (one item) with the same asyncio + httpx load generator at the same
concurrency, alternating rounds so both see the same machine. Prints requests/s and p50/p99.

    .venv/bin/python benchmarks/entitlements_check.py --concurrency 32 --seconds 10 --rounds 3
    .venv/bin/python benchmarks/entitlements_check.py --client raw   # a lighter load generator

The consume org has unlimited errors and no spike protection, so every consume is a real script
call (never a cached denial); the check asks for a feature the plan has not got, so it takes the
longest branch (an upgrade suggestion).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-admin-token-0123456789abcdef"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "TOLLGATE_DATA_DIR": str(data_dir),
        "TOLLGATE_ADMIN_TOKEN": TOKEN,
        "TOLLGATE_LOG_LEVEL": "WARNING",
    }
    cmd = [
        sys.executable, "-m", "uvicorn", "app.asgi:app",
        "--host", "127.0.0.1", "--port", str(port),
        "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    log = (data_dir / "server.log").open("wb")  # keeps the server's worker chatter off the table
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


async def wait_ready(base: str, proc: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient(base_url=base) as client:
        for _ in range(300):
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited during start-up; see {proc.args}")
            try:
                if (await client.get("/ready")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("the server did not become ready")


async def setup(base: str) -> str:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=base, headers=headers) as client:
        org = (await client.post("/v1/organizations", json={"name": "bench", "plan": "team"})).json()
        resp = await client.patch(
            f"/v1/organizations/{org['id']}",
            json={"overrides": {"quotas": {"error": None}}, "spike_protection": False},
        )
        resp.raise_for_status()
        return str(org["id"])


async def drive_httpx(
    base: str, path: str, body: bytes, concurrency: int, seconds: float
) -> tuple[list[float], int, float]:
    """``concurrency`` httpx workers send ``body`` to ``path`` back to back for ``seconds``."""
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits) as client:
        for _ in range(200):  # warm the connections, the auth cache and the script cache
            await client.post(path, content=body)
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors
            while (start := time.perf_counter()) < deadline:
                resp = await client.post(path, content=body)
                latencies.append(time.perf_counter() - start)
                if resp.status_code != 200:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return latencies, errors, time.perf_counter() - started


async def drive_raw(
    base: str, path: str, body: bytes, concurrency: int, seconds: float
) -> tuple[list[float], int, float]:
    """The same load from a minimal HTTP/1.1 keep-alive client on asyncio streams: it costs a few
    microseconds per request, so on a small machine the server, not the client, is measured."""
    host, port = base.removeprefix("http://").split(":")
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    latencies: list[float] = []
    errors = 0

    async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await reader.readexactly(length)
        return head[9:12] == b"200"

    conns = [await asyncio.open_connection(host, int(port)) for _ in range(concurrency)]
    for reader, writer in conns:  # warm up
        for _ in range(20):
            await one(reader, writer)
    deadline = time.perf_counter() + seconds

    async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal errors
        while (start := time.perf_counter()) < deadline:
            ok = await one(reader, writer)
            latencies.append(time.perf_counter() - start)
            errors += not ok

    started = time.perf_counter()
    await asyncio.gather(*(worker(r, w) for r, w in conns))
    elapsed = time.perf_counter() - started
    for _, writer in conns:
        writer.close()
    return latencies, errors, elapsed


async def drive(
    client: str, base: str, path: str, body: bytes, concurrency: int, seconds: float
) -> dict[str, float]:
    run = drive_raw if client == "raw" else drive_httpx
    latencies, errors, elapsed = await run(base, path, body, concurrency, seconds)
    latencies.sort()
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50_ms": q[49] * 1000,
        "p99_ms": q[98] * 1000,
        "errors": errors,
    }


async def main(args: argparse.Namespace) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="tollgate-bench-") as tmp:
        proc = start_server(Path(tmp), port)
        try:
            await wait_ready(base, proc)
            org = await setup(base)
            check = f'{{"organization_id":"{org}","feature":"advanced_analytics"}}'.encode()
            consume = f'{{"organization_id":"{org}","items":[{{"category":"error","quantity":1}}]}}'.encode()
            results: dict[str, list[dict[str, float]]] = {"check": [], "consume": []}
            for _ in range(args.rounds):
                for name, path, body in (
                    ("check", "/v1/entitlements/check", check),
                    ("consume", "/v1/quotas/consume", consume),
                ):
                    results[name].append(
                        await drive(args.client, base, path, body, args.concurrency, args.seconds)
                    )
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(
        f"client {args.client}, concurrency {args.concurrency}, "
        f"{args.rounds} rounds of {args.seconds:g} s each, alternating\n"
    )
    print("| endpoint | requests/s | p50 ms | p99 ms | errors |")
    print("|---|---|---|---|---|")
    for name, path in (("check", "POST /v1/entitlements/check"), ("consume", "POST /v1/quotas/consume")):
        runs = results[name]
        for i, r in enumerate(runs, 1):
            print(
                f"| {path} (round {i}) | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
                f"| {r['errors']:.0f} |"
            )
        med: dict[str, Any] = {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50_ms", "p99_ms")}
        rps, p50, p99 = med["rps"], med["p50_ms"], med["p99_ms"]
        print(f"| **{path} (median)** | **{rps:.0f}** | **{p50:.2f}** | **{p99:.2f}** | |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--client", choices=["httpx", "raw"], default="httpx", help="load generator (raw: asyncio streams)"
    )
    asyncio.run(main(parser.parse_args()))
