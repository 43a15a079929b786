"""The meter's speed, against references measured in the same run on the same host (issue 3).

Starts its own servers on 127.0.0.1: a private redis-server (app.infra.embedded_redis, AOF OFF for
the benchmark: the production default is AOF everysec) and the app under uvicorn in a subprocess
(one worker, --http httptools, --loop uvloop, --no-access-log; SQLite in a temp dir; the embedded
job worker off and usage flush every hour, so Redis sees only the meter's commands).

    bash benchmarks/setup.sh                       # redis-benchmark + wrk (Debian packages)
    .venv/bin/python benchmarks/meter.py all        # every target, ~10 min
    .venv/bin/python benchmarks/meter.py all --quick  # < 2 min
    .venv/bin/python benchmarks/meter.py refs http  # only some measurements

Load generators: wrk (-t 1) for closed-loop HTTP throughput, redis-benchmark for Redis, and
benchmarks/_load.py (Python, asyncio) for open-loop latency and overload. All on the same 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import redis as redis_sync
import redis.asyncio as aredis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _load  # noqa: E402

from app.clock import Clock  # noqa: E402
from app.infra.embedded_redis import EmbeddedRedis, free_port  # noqa: E402
from app.metering.config import QuotaConfig  # noqa: E402
from app.metering.meter import CONSUME, Meter  # noqa: E402
from app.metering.results import Item  # noqa: E402
from app.plans import CATEGORIES  # noqa: E402
from app.settings import MeterSettings  # noqa: E402

TOKEN = "bench-admin-token-0123456789abcdef"
GRACE, IDEM_TTL = 86_400, 86_400


def create_bare() -> Any:
    """L: a bare Litestar endpoint returning a constant JSON body (served the same way)."""
    from litestar import Litestar, get

    @get("/bare", sync_to_thread=False)
    def bare() -> dict[str, Any]:
        return {"organization_id": "bench", "accepted": True, "items": []}

    return Litestar([bare])


# ----------------------------------------------------------------------------------------- setup
class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.quick: bool = args.quick
        self.tmp = Path(tempfile.mkdtemp(prefix="tollgate-meterbench-"))
        self.redis = EmbeddedRedis(self.tmp / "redis", appendonly=False).start()
        self.r = redis_sync.Redis(port=self.redis.port)
        self.servers: list[subprocess.Popen[bytes]] = []
        self.port = 0
        self.ref: dict[str, float] = {}
        self.rows: dict[str, list[list[str]]] = {}
        self.notes: dict[str, list[str]] = {}
        self.commands: dict[str, list[str]] = {}
        self.now = int(time.time())
        self.quota = QuotaConfig(
            organization_id="ref",
            version=1,
            suspended=False,
            period_start=self.now - 86_400,
            period_end=self.now + 20 * 86_400,
            limits={c: (-1 if c == "error" else 50_000) for c in CATEGORIES},
            on_demand_cents=dict.fromkeys(CATEGORIES, 0.05),
            plan="team",
            plan_version=1,
        )
        self.config = self.quota.to_redis()
        self.sha = self.r.script_load(CONSUME.source)

    def secs(self, full: float) -> float:
        return max(2.0, full / 4) if self.quick else full

    def close(self) -> None:
        for p in self.servers:
            p.terminate()
            p.wait(timeout=30)
        self.redis.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ------------------------------------------------------------------- servers
    def start_app(
        self, target: str = "app.asgi:app", *, factory: bool = False, cwd: Path = ROOT, **meter: Any
    ) -> int:
        """Serve ``target`` from the checkout at ``cwd`` (another git worktree for A/B runs)."""
        port = free_port()
        env = {
            **os.environ,
            "TOLLGATE_DATA_DIR": str(self.tmp / f"data-{port}"),
            "TOLLGATE_ADMIN_TOKEN": TOKEN,
            "TOLLGATE_LOG_LEVEL": "WARNING",
            "TOLLGATE_REDIS__URL": self.redis.url,
            "TOLLGATE_WORKER__EMBEDDED": "false",
            "TOLLGATE_METER__FLUSH_INTERVAL": "3600",
            **{f"TOLLGATE_METER__{k.upper()}": str(v) for k, v in meter.items()},
        }
        cmd = [
            sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1", "--no-access-log", "--http", "httptools", "--loop", "uvloop",
            "--log-level", "warning", "--app-dir", str(Path(__file__).parent), *(["--factory"] if factory else []),  # noqa: E501
        ]  # fmt: skip
        log = (self.tmp / f"server-{port}.log").open("wb")
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.servers.append(proc)
        path = "/bare" if factory else "/ready"
        for _ in range(300):
            if proc.poll() is not None:
                raise RuntimeError(f"server exited; see {log.name}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}{path}").status_code == 200:
                    return port
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError("server did not become ready")

    def stop_app(self, port: int) -> None:
        for p in list(self.servers):
            if f"{port}" in p.args:  # type: ignore[operator]
                p.terminate()
                p.wait(timeout=30)
                self.servers.remove(p)

    def app(self) -> int:
        if not self.port:
            self.port = self.start_app()
        return self.port

    def api(self) -> httpx.Client:
        return httpx.Client(
            base_url=f"http://127.0.0.1:{self.app()}", headers={"Authorization": f"Bearer {TOKEN}"}
        )

    def new_org(self, plan: str = "team", unlimited: bool = True) -> str:
        with self.api() as c:
            org = c.post("/v1/organizations", json={"name": "bench", "plan": plan}).json()
            if unlimited:
                c.patch(
                    f"/v1/organizations/{org['id']}",
                    json={"overrides": {"quotas": {"error": None}}, "spike_protection": False},
                ).raise_for_status()
            return str(org["id"])

    def record(self, section: str, cmd: str) -> None:
        self.commands.setdefault(section, []).append(cmd)

    def row(self, section: str, *cells: Any) -> None:
        self.rows.setdefault(section, []).append([str(c) for c in cells])
        print(f"[{section}] " + " | ".join(str(c) for c in cells), flush=True)

    # ------------------------------------------------------------------- tools
    def redis_benchmark(
        self, section: str, *args: str, n: int, c: int = 50, P: int = 1, r: int = 0
    ) -> dict[str, float]:
        cmd = [
            "redis-benchmark",
            "-p",
            str(self.redis.port),
            "-c",
            str(c),
            "-n",
            str(n),
            "-P",
            str(P),
            "--csv",
        ]
        if r:
            cmd += ["-r", str(r)]
        cmd += list(args)
        self.record(section, " ".join(a if a and " " not in a else repr(a) for a in cmd))
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        lines = [ln for ln in out.splitlines() if ln.startswith('"') and not ln.startswith('"test"')]
        vals = [v.strip('"') for v in lines[-1].split(",")]
        return {"rps": float(vals[1]), "p50": float(vals[4]), "p99": float(vals[6])}

    def evalsha_args(self, org: str) -> list[str]:
        k = [f"tg:{{{org}}}:qc", f"tg:{{{org}}}:u", f"tg:{{{org}}}:idem:"]
        return [
            "EVALSHA",
            self.sha,
            "3",
            *k,
            str(self.now),
            str(GRACE),
            "",
            str(IDEM_TTL),
            "",
            "",
            "error",
            "1",
            "",
        ]

    def seed(self, org: str) -> None:
        self.r.set(f"tg:{{{org}}}:qc", self.config)

    def wrk(self, section: str, path: str, body: str | None, conns: int, seconds: float) -> dict[str, float]:
        script = self.tmp / f"wrk-{abs(hash((path, body)))}.lua"
        lines = [f'wrk.headers["Authorization"] = "Bearer {TOKEN}"']
        if body is not None:
            lines += [
                'wrk.method = "POST"',
                f"wrk.body = {json.dumps(body)}",
                'wrk.headers["Content-Type"] = "application/json"',
            ]
        script.write_text("\n".join(lines) + "\n")
        url = f"http://127.0.0.1:{self.port_for(path)}{path}"
        cmd = [
            "wrk",
            "-t",
            "1",
            "-c",
            str(conns),
            "-d",
            f"{max(1, round(seconds))}s",
            "--latency",
            "-s",
            str(script),
            url,
        ]
        self.record(section, " ".join(cmd) + f"   # {script.name}: POST {(body or '')[:90]}...")
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)

        def lat(q: str) -> float:
            m = re.search(rf"\s{q}%\s+([\d.]+)(us|ms|s)\b", out)
            assert m, out
            return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

        return {
            "rps": rps,
            "p50": lat("50"),
            "p99": lat("99"),
            "non2xx": float(non2xx.group(1)) if non2xx else 0.0,
        }

    _paths: dict[str, int] = {}

    def port_for(self, path: str) -> int:
        return self._paths.get(path, self.app())


def verdict(ok: bool) -> str:
    return "**pass**" if ok else "**FAIL**"


def run_loop(coro: Any) -> Any:
    import uvloop

    return uvloop.run(coro)


# ----------------------------------------------------------------------------------------- refs
def refs(b: Bench) -> None:
    s = "refs"
    n = 20_000 if b.quick else 100_000
    ping = b.redis_benchmark(s, "PING", n=n, c=1)
    b.ref.update(rtt_p50=ping["p50"], rtt_p99=ping["p99"])
    b.row(
        s,
        "RTT (redis-benchmark -c 1 PING)",
        f"p50 {ping['p50']:.3f} ms, p99 {ping['p99']:.3f} ms",
        f"{ping['rps']:.0f} req/s",
    )
    b.seed("ref")
    b.r.config_resetstat()
    for _ in range(10):  # one client, pipelines of 1,000: Redis' own time per call, unhurried
        pipe = b.r.pipeline(transaction=False)
        for _ in range(1000):
            pipe.execute_command(*b.evalsha_args("ref"))
        pipe.execute()
    script_us = float(b.r.info("commandstats")["cmdstat_evalsha"]["usec_per_call"])
    b.ref["script_us"] = script_us
    unpip = b.redis_benchmark(s, *b.evalsha_args("ref"), n=n * 2, c=50, P=1)
    pip = b.redis_benchmark(s, *b.evalsha_args("ref"), n=n * 4, c=50, P=16)
    b.ref.update(R_unpip=unpip["rps"], R_pip=pip["rps"])
    b.row(
        s,
        "R_unpip (EVALSHA consume.lua, -c 50 -P 1)",
        f"{unpip['rps']:.0f} calls/s",
        f"p50 {unpip['p50']:.3f} ms",
    )
    b.row(
        s,
        "consume.lua: Redis time per call (INFO commandstats usec_per_call, 10 x 1,000 pipelined)",
        f"{script_us:.1f} µs",
        "",
    )
    b.row(
        s, "R_pip (EVALSHA consume.lua, -c 50 -P 16)", f"{pip['rps']:.0f} calls/s", f"p50 {pip['p50']:.3f} ms"
    )
    py, pypipe = run_loop(redis_py_refs(b, b.secs(8)))
    b.ref.update(R_py=py, R_pypipe=pypipe)
    b.record(
        s,
        "redis-py 8 asyncio (uvloop): 64 tasks each awaiting evalsha in a loop; and a loop of pipeline(64 x evalsha).execute()",  # noqa: E501
    )
    b.row(s, "R_py (redis-py, gather of 64 concurrent evalsha)", f"{py:.0f} calls/s", "")
    b.row(s, "R_pypipe (redis-py, pipelines of 64 evalsha)", f"{pypipe:.0f} calls/s", "")
    port = b.start_app("meter:create_bare", factory=True)
    b._paths["/bare"] = port
    bare = b.wrk(s, "/bare", None, 64, b.secs(10))
    b.ref["L"] = bare["rps"]
    b.row(
        s,
        "L (bare Litestar GET, constant JSON, wrk -c 64)",
        f"{bare['rps']:.0f} req/s",
        f"p50 {bare['p50']:.2f} ms, p99 {bare['p99']:.2f} ms",
    )
    b.stop_app(port)


async def redis_py_refs(b: Bench, seconds: float) -> tuple[float, float]:
    r = aredis.Redis(port=b.redis.port, max_connections=256)
    args = b.evalsha_args("ref")[1:]
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await r.evalsha(*args)
            done += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(64)))
    py = done / (time.perf_counter() - t0)
    done, deadline = 0, time.perf_counter() + seconds
    t0 = time.perf_counter()
    while time.perf_counter() < deadline:
        pipe = r.pipeline(transaction=False)
        for _ in range(64):
            pipe.evalsha(*args)
        await pipe.execute()
        done += 64
    pypipe = done / (time.perf_counter() - t0)
    await r.aclose()
    return py, pypipe


# ----------------------------------------------------------------------------------------- targets
def consume_body(org: str, cats: tuple[str, ...] = ("error",)) -> str:
    return json.dumps({"organization_id": org, "items": [{"category": c, "quantity": 1} for c in cats]})


def t1_http(b: Bench) -> None:
    s = "1"
    org = b.new_org()
    res = b.wrk(s, "/v1/quotas/consume", consume_body(org), 64, b.secs(12))
    b.ref["peak"] = res["rps"]
    b.ref["peak_p50"] = res["p50"]
    r1, r2 = res["rps"] / b.ref["R_unpip"], res["rps"] / b.ref["L"]
    b.row(
        s,
        "consume rps vs R_unpip",
        f"{res['rps']:.0f}",
        f"{b.ref['R_unpip']:.0f}",
        f"{r1:.3f} (>= 0.15)",
        verdict(r1 >= 0.15),
    )
    b.row(
        s,
        "consume rps vs L",
        f"{res['rps']:.0f}",
        f"{b.ref['L']:.0f}",
        f"{r2:.3f} (>= 0.6)",
        verdict(r2 >= 0.6),
    )
    b.notes.setdefault(s, []).append(
        f"wrk -c 64: p50 {res['p50']:.2f} ms, p99 {res['p99']:.2f} ms, non-2xx {res['non2xx']:.0f}"
    )


class Monitor:
    """MONITOR on the benchmark Redis: counts commands sent by clients (not those run by Lua)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.sendall(b"MONITOR\r\n")
        self.buf = b""
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while b'"bench-stop"' not in self.buf:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                break
            self.buf += chunk

    def stop(self, r: redis_sync.Redis) -> Counter[str]:
        r.echo("bench-stop")
        self.thread.join(10)
        self.sock.close()
        out: Counter[str] = Counter()
        for line in self.buf.decode(errors="replace").splitlines():
            m = re.match(r'^\+[\d.]+ \[\d+ ([^\]]+)\] "(\w+)"', line)
            if m and m.group(1) != "lua" and m.group(2).upper() not in ("ECHO",):
                out[m.group(2).upper()] += 1
        return out


def t2_commands(b: Bench) -> None:
    s = "2"
    k = 50 if b.quick else 200
    team = b.new_org()
    free = b.new_org(plan="free", unlimited=False)
    with b.api() as c:
        for cats in (("error",), ("error", "transaction", "replay", "attachment")):
            c.post("/v1/quotas/consume", content=consume_body(team, cats)).raise_for_status()  # warm
            mon = Monitor(b.redis.port)
            time.sleep(0.05)
            for _ in range(k):
                c.post(
                    "/v1/quotas/consume",
                    content=consume_body(team, cats),
                    headers={"content-type": "application/json"},
                )
            counts = mon.stop(b.r)
            per = sum(counts.values()) / k
            b.row(
                s,
                f"{len(cats)} categor{'y' if len(cats) == 1 else 'ies'} of one org",
                f"{per:.2f} commands/request",
                dict(counts),
                "1",
                verdict(per == 1.0),
            )
        body = json.dumps({"organization_id": free, "items": [{"category": "replay", "quantity": 50}]})
        c.post(
            "/v1/quotas/consume", content=body, headers={"content-type": "application/json"}
        ).raise_for_status()
        denied = c.post(
            "/v1/quotas/consume",
            content=consume_body(free, ("replay",)),
            headers={"content-type": "application/json"},
        )
        assert denied.json()["accepted"] is False, denied.text
        mon = Monitor(b.redis.port)
        time.sleep(0.05)
        t0 = time.perf_counter()
        statuses = Counter(
            c.post(
                "/v1/quotas/consume",
                content=consume_body(free, ("replay",)),
                headers={"content-type": "application/json"},
            ).json()["accepted"]
            for _ in range(k)
        )
        took = time.perf_counter() - t0
        counts = mon.stop(b.r)
        per = sum(counts.values()) / k
        b.row(
            s,
            "denial already known exhausted (within denial_cache_seconds=1)",
            f"{per:.2f} commands/request",
            dict(counts) or "{}",
            "0",
            verdict(per == 0 and statuses == Counter({False: k})),
        )
    b.record(
        s,
        f"MONITOR on the benchmark Redis while sending {k} sequential requests per case (httpx); commands from clients counted, commands run inside Lua ('[0 lua]') not; the denial case ran {k} requests in {took:.2f} s",  # noqa: E501
    )


OPENLOOP = Path(__file__).parent / ".bin" / "openloop"


def openloop(
    b: Bench, port: int, body: str, rate: float, seconds: float, *, connections: int = 64
) -> dict[str, Any]:
    """``benchmarks/openloop.c``: arrivals at ``rate``/s evenly spaced whatever the server does, latency
    from the scheduled arrival (no coordinated omission), a few tens of µs of CPU per request."""
    req = b.tmp / f"request-{port}.http"
    req.write_bytes(_load.build_request("127.0.0.1", "POST", "/v1/quotas/consume", TOKEN, body.encode()))
    cmd = [
        str(OPENLOOP), "--host", "127.0.0.1", "--port", str(port), "--rate", f"{rate:.0f}",
        "--seconds", f"{seconds:g}", "--connections", str(connections),
        "--max-connections", "1024", "--timeout", "5", "--request-file", str(req),
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    res: dict[str, Any] = json.loads(out)
    res["cpu_us_per_request"] = (res["cpu_user_s"] + res["cpu_sys_s"]) / max(1, res["sent"]) * 1e6
    return res


def t3_latency(b: Bench) -> None:
    s = "3"
    org = b.new_org()
    rate = 0.5 * b.ref["peak"]
    res = openloop(b, b.app(), consume_body(org), rate, b.secs(12))
    p50, p99 = res["ok_p50_ms"], res["ok_p99_ms"]
    b.record(
        s,
        f"benchmarks/.bin/openloop (benchmarks/openloop.c): {rate:.0f} req/s (50% of the wrk peak) evenly spaced, 64 keep-alive connections, latency from the scheduled arrival",  # noqa: E501
    )
    b.row(
        s,
        "p50 vs 8 x RTT.p50",
        f"{p50:.2f} ms",
        f"{8 * b.ref['rtt_p50']:.3f} ms",
        f"{p50 / b.ref['rtt_p50']:.1f} x RTT (<= 8)",
        verdict(p50 <= 8 * b.ref["rtt_p50"]),
    )
    b.row(
        s,
        "p99 vs 15 x RTT.p99",
        f"{p99:.2f} ms",
        f"{15 * b.ref['rtt_p99']:.3f} ms",
        f"{p99 / b.ref['rtt_p99']:.1f} x RTT (<= 15)",
        verdict(p99 <= 15 * b.ref["rtt_p99"]),
    )
    b.notes.setdefault(s, []).append(
        f"statuses {res['statuses']}, timeouts {res['timeouts']}, failures {res['failures']}, not sent {res['not_sent']}, "  # noqa: E501
        f"generator {res['cpu_us_per_request']:.0f} µs CPU/request, "
        f"send lag max {res['send_lag_max_ms']:.2f} ms"
    )


def t4_batch(b: Bench) -> None:
    s = "4"
    orgs = [b.new_org() for _ in range(10)]
    body = json.dumps({"requests": [json.loads(consume_body(orgs[i % 10])) for i in range(1000)]})
    res = b.wrk(s, "/v1/quotas/consume/batch", body, 4, b.secs(12))
    ev = res["rps"] * 1000
    b.row(
        s,
        "1,000 events over 10 (org, category): events/s vs R_pip",
        f"{ev:.0f}",
        f"{b.ref['R_pip']:.0f}",
        f"{ev / b.ref['R_pip']:.2f} (>= 1.0)",
        verdict(ev >= b.ref["R_pip"]),
    )
    n = 1000
    with b.api() as c:
        many = [
            c.post("/v1/organizations", json={"name": f"b{i}", "plan": "team"}).json()["id"] for i in range(n)
        ]
    body = json.dumps({"requests": [json.loads(consume_body(o)) for o in many]})
    res2 = b.wrk(s, "/v1/quotas/consume/batch", body, 4, b.secs(12))
    ev2 = res2["rps"] * 1000
    b.row(
        s,
        "worst case, 1,000 distinct orgs: events/s vs R_pypipe",
        f"{ev2:.0f}",
        f"{b.ref['R_pypipe']:.0f}",
        f"{ev2 / b.ref['R_pypipe']:.2f} (>= 0.5)",
        verdict(ev2 >= 0.5 * b.ref["R_pypipe"]),
    )
    b.notes.setdefault(s, []).append(
        f"batch p50 {res['p50']:.1f} ms / {res2['p50']:.1f} ms; non-2xx {res['non2xx']:.0f} / {res2['non2xx']:.0f} "  # noqa: E501
        "(team orgs; the 10-org case with unlimited errors and spike protection off)"
    )


class _Source:
    def __init__(self, cfg: QuotaConfig) -> None:
        self.cfg = cfg

    async def load(self, organization_id: str) -> tuple[QuotaConfig, dict[str, int]] | None:
        return self.cfg, {}


def t5_inproc(b: Bench) -> None:
    s = "5"

    async def go() -> float:
        r = aredis.Redis(port=b.redis.port, max_connections=256)
        import dataclasses

        base = QuotaConfig(
            organization_id="inproc", version=1, suspended=False, period_start=b.now - 86_400,
            period_end=b.now + 20 * 86_400, limits={c: (-1 if c == "error" else 50_000) for c in CATEGORIES},
        )  # fmt: skip
        meter = Meter(r, _Source(dataclasses.replace(base)), MeterSettings(), Clock())
        await meter.publish(base)
        items = [Item("error", 1)]
        done = 0
        deadline = time.perf_counter() + b.secs(8)

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                d = await meter.consume("inproc", items)
                assert d.all_accepted and not d.degraded
                done += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(64)))
        rate = done / (time.perf_counter() - t0)
        await r.aclose()
        return rate

    rate = run_loop(go())
    b.record(
        s,
        "Meter(redis-py asyncio, uvloop) in this process: 64 tasks each awaiting meter.consume(org, [error x1]) in a loop",  # noqa: E501
    )
    b.row(
        s,
        "in-process Meter.consume vs R_py",
        f"{rate:.0f} calls/s",
        f"{b.ref['R_py']:.0f}",
        f"{rate / b.ref['R_py']:.2f} (>= 1.0)",
        verdict(rate >= b.ref["R_py"]),
    )


def t6_lease(b: Bench) -> None:
    s = "6"
    try:
        from app.metering.client import LeasingMeter, TollgateClient
    except ImportError:
        b.row(s, "leasing client", "app/metering/client.py not present", "", "", "not measured")
        return
    base = f"http://127.0.0.1:{b.app()}"
    unlimited = b.new_org()
    limited = b.new_org(plan="team", unlimited=False)  # 50,000 errors, spike protection on
    with b.api() as c:
        c.patch(f"/v1/organizations/{limited}", json={"spike_protection": False}).raise_for_status()

    async def go(org: str, n: int) -> tuple[float, int]:
        async with TollgateClient(base, TOKEN) as client:
            lm = LeasingMeter(client, block=10_000)
            t0 = time.perf_counter()
            accepted = 0
            for _ in range(n):
                # the intended hot loop: decide synchronously from the held lease, await only
                # when the lease must be refilled
                decided = lm.try_local(org, "error")
                if decided is None:
                    decided = await lm.consume(org, "error")
                accepted += decided
            rate = n / (time.perf_counter() - t0)
            await lm.close()
            assert accepted == lm.accepted
            return rate, accepted

    n = 300_000 if b.quick else 2_000_000
    rate, acc = run_loop(go(unlimited, n))
    used = _used(b, unlimited)
    b.row(
        s,
        f"local decisions/s (unlimited org, {n:,} events, block 10,000)",
        f"{rate:,.0f}",
        "1,000,000",
        f"{rate / 1e6:.2f}",
        verdict(rate >= 1e6),
    )
    b.row(
        s,
        "total grants exact (unlimited org)",
        f"accepted {acc:,}, server used {used:,}",
        "equal",
        "",
        verdict(acc == used),
    )
    rate2, acc2 = run_loop(go(limited, 120_000))
    used2 = _used(b, limited)
    b.row(
        s,
        "limit never exceeded (team, 50,000 errors, 120,000 events)",
        f"accepted {acc2:,}, server used {used2:,} ({rate2:,.0f}/s)",
        "50,000",
        "",
        verdict(acc2 == used2 == 50_000),
    )
    b.record(
        s,
        "LeasingMeter(TollgateClient(base, token), block=10_000): per event meter.try_local(org, 'error'), falling back to await meter.consume(...) only to refill, then close() (returns unused units); server usage read from GET /v1/organizations/{id}/usage",  # noqa: E501
    )


def _used(b: Bench, org: str) -> int:
    with b.api() as c:
        usage = c.get(f"/v1/organizations/{org}/usage").json()
    return int(next(x for x in usage["categories"] if x["category"] == "error")["used"])


def t7_keys(b: Bench) -> None:
    s = "7"
    n_orgs = 100_000 if b.quick else 1_000_000
    pad = lambda i: f"{i:012d}"  # noqa: E731  (redis-benchmark's __rand_int__ format)
    one = pad(1)
    b.r.flushall()
    b.sha = b.r.script_load(CONSUME.source)
    b.seed(one)
    n = 200_000 if b.quick else 500_000
    args1 = b.evalsha_args(one)
    base1 = b.redis_benchmark(s, *args1, n=n, c=50, P=16)
    mem0 = int(b.r.info("memory")["used_memory"])
    seed = """
local P, pe, ttl = ARGV[1], ARGV[2], ARGV[5]
for i = tonumber(ARGV[3]), tonumber(ARGV[4]) do
  local id = string.format('%012d', i)
  redis.call('SET', 'tg:{' .. id .. '}:qc', ARGV[6], 'EX', ttl)
  redis.call('HSET', 'tg:{' .. id .. '}:u', 'p', P, P .. ':e', pe, P .. ':u:error', 1)
  redis.call('EXPIRE', 'tg:{' .. id .. '}:u', ttl)
end
return 1
"""
    ttl = b.quota.period_end + GRACE - b.now
    t0 = time.perf_counter()
    step = 20_000
    for a in range(0, n_orgs, step):
        b.r.eval(
            seed, 0, b.quota.period_start, b.quota.period_end, a, min(a + step, n_orgs) - 1, ttl, b.config
        )
    seeded = time.perf_counter() - t0
    mem1 = int(b.r.info("memory")["used_memory"])
    cfg_b = b.r.memory_usage(f"tg:{{{pad(7)}}}:qc") or 0
    u_b = b.r.memory_usage(f"tg:{{{pad(7)}}}:u") or 0
    args = b.evalsha_args("__rand_int__")
    many = b.redis_benchmark(s, *args, n=n, c=50, P=16, r=n_orgs)
    ratio = many["rps"] / base1["rps"]
    per_org = (mem1 - mem0) / n_orgs
    b.row(
        s,
        f"EVALSHA throughput, {n_orgs:,} orgs vs 1 org (-P 16)",
        f"{many['rps']:.0f}",
        f"{base1['rps']:.0f}",
        f"{ratio:.2f} (>= 0.75)",
        verdict(ratio >= 0.75),
    )
    b.row(
        s,
        "memory per org (config string + counters hash, both with their TTL)",
        f"{per_org:.0f} B (used_memory delta / orgs)",
        "200 B",
        f"cfg {cfg_b} B + counters {u_b} B (MEMORY USAGE)",
        verdict(per_org <= 200),
    )
    b.row(s, "memory per counters key (the per-org live state)", f"{u_b} B", "200 B", "", verdict(u_b <= 200))
    b.notes.setdefault(s, []).append(
        f"seeded {n_orgs:,} orgs in {seeded:.1f} s by a Lua loop; __rand_int__ draws each key's id independently, so "  # noqa: E501
        "a call may read org X's config and count in org Y's counters (identical configs: same work)"
    )
    b.r.flushall()
    b.sha = b.r.script_load(CONSUME.source)


def t8_overload(b: Bench) -> None:
    s = "8"
    org = b.new_org()
    peak = b.ref["peak"]
    for limit in (1024, 256, 64):
        port = b.start_app(max_in_flight=limit)
        res = openloop(b, port, consume_body(org), 2 * peak, b.secs(12))
        b.stop_app(port)
        st = res["statuses"]
        good = st.get("200", 0) / res["elapsed"]
        shed = (st.get("503", 0) + st.get("429", 0)) / res["elapsed"]
        other = {k: v for k, v in st.items() if k not in ("200", "503", "429")}
        ok = good >= 0.9 * peak and not other and res["failures"] == 0 and res["timeouts"] == 0
        b.row(
            s,
            f"2 x peak offered ({2 * peak:.0f} req/s), max_in_flight={limit}",
            f"200: {good:.0f}/s, 503/429: {shed:.0f}/s, other {other or 0}, timeouts {res['timeouts']}, errors {res['failures']}, not sent {res['not_sent']}",  # noqa: E501
            f"0.9 x peak = {0.9 * peak:.0f}",
            f"{good / peak:.2f}; p50/p99 of 200s {res['ok_p50_ms'] or 0:.0f}/{res['ok_p99_ms'] or 0:.0f} ms; generator {res['cpu_us_per_request']:.0f} µs CPU/req",  # noqa: E501
            verdict(ok),
        )
    b.record(
        s,
        "benchmarks/.bin/openloop at 2 x the wrk peak, evenly spaced arrivals, up to 1,024 keep-alive connections, 5 s client timeout; a fresh server per max_in_flight",  # noqa: E501
    )


def profile(b: Bench) -> None:
    s = "profile"
    spy = shutil.which("py-spy") or "/tmp/pyspy/bin/py-spy"
    if not Path(spy).exists():
        b.row(s, "py-spy not installed", "", "", "", "")
        return
    org = b.new_org()
    port = b.app()
    proc = next(p for p in b.servers if str(port) in p.args)  # type: ignore[operator]
    out = b.tmp / "profile.txt"
    secs = b.secs(10)
    rec = subprocess.Popen(
        [
            spy,
            "record",
            "-p",
            str(proc.pid),
            "-d",
            f"{int(secs)}",
            "-r",
            "200",
            "-f",
            "raw",
            "-o",
            str(out),
            "--nonblocking",
        ],
        env={**os.environ, "PYTHONPATH": "/tmp/pyspy"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    b.wrk(s, "/v1/quotas/consume", consume_body(org), 64, secs + 1)
    rec.wait(timeout=60)
    b.record(
        s,
        f"py-spy record -p <server pid> -d {int(secs)} -r 200 -f raw --nonblocking, under wrk -c 64 consume",
    )
    summarize_profile(b, out)


def summarize_profile(b: Bench, path: Path) -> None:
    total = 0
    incl: Counter[str] = Counter()
    self_: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        count = int(n)
        total += count
        frames = stack.split(";")
        seen: set[str] = set()
        for f in frames:
            key = _frame(f)
            if key not in seen:
                incl[key] += count
                seen.add(key)
        self_[_frame(frames[-1])] += count
    groups = {
        "uvicorn/httptools protocol": ("httptools_impl", "uvicorn"),
        "litestar routing/request/response": ("litestar",),
        "msgspec": ("msgspec",),
        "redis-py": ("redis/",),
        "app (meter, services, controllers, auth)": ("app/",),
        "asyncio/uvloop": ("asyncio", "uvloop"),
        "structlog": ("structlog",),
    }
    by_group: Counter[str] = Counter()
    for fn, cnt in self_.items():
        g = next((g for g, keys in groups.items() if any(k in fn for k in keys)), "other")
        by_group[g] += cnt
    b.notes.setdefault("profile", []).append(f"{total} samples")
    for g, cnt in by_group.most_common():
        b.row("profile-self", g, f"{100 * cnt / total:.1f}% self")
    for fn, cnt in incl.most_common(40):
        if any(k in fn for k in ("app/", "litestar/", "redis/", "httptools", "msgspec")):
            b.row(
                "profile-incl",
                fn,
                f"{100 * cnt / total:.1f}% inclusive",
                f"{100 * self_[fn] / total:.1f}% self",
            )


def _frame(f: str) -> str:
    f = re.sub(r":\d+\)?$", "", f.strip())
    f = f.replace(str(ROOT) + "/", "").replace(".venv/lib/python3.11/site-packages/", "")
    return re.sub(r"/usr/lib/python3\.11/", "", f)


STEPS: dict[str, Callable[[Bench], None]] = {
    "refs": refs, "http": t1_http, "commands": t2_commands, "latency": t3_latency, "batch": t4_batch,
    "inproc": t5_inproc, "lease": t6_lease, "keys": t7_keys, "overload": t8_overload, "profile": profile,
}  # fmt: skip
NEEDS = {
    "http": ["refs"],
    "latency": ["refs", "http"],
    "overload": ["refs", "http"],
    "batch": ["refs"],
    "inproc": ["refs"],
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("steps", nargs="*", default=["all"], help=f"all or any of: {' '.join(STEPS)}")
    p.add_argument("--quick", action="store_true", help="short runs (< 2 min in all)")
    p.add_argument("--json", type=Path, help="write every row and reference here")
    args = p.parse_args()
    for tool in ("redis-benchmark", "wrk", str(OPENLOOP)):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found: run bash benchmarks/setup.sh")
    wanted = list(STEPS) if "all" in args.steps else args.steps
    order = []
    for st in wanted:
        for dep in NEEDS.get(st, []):
            if dep not in order:
                order.append(dep)
        if st not in order:
            order.append(st)
    b = Bench(args)
    t0 = time.perf_counter()
    try:
        for st in order:
            STEPS[st](b)
    finally:
        b.close()
    print(
        f"\ntotal {time.perf_counter() - t0:.0f} s; references: { {k: round(v, 4) for k, v in b.ref.items()} }"  # noqa: E501
    )
    if args.json:
        args.json.write_text(
            json.dumps({"ref": b.ref, "rows": b.rows, "notes": b.notes, "commands": b.commands}, indent=1)
        )


if __name__ == "__main__":
    main()
