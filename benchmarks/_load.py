"""A minimal HTTP/1.1 keep-alive load generator on asyncio streams (uvloop when installed).

Two shapes:
- ``closed_loop``: ``concurrency`` connections send back to back (what wrk does);
- ``open_loop``: requests *arrive* at a fixed rate whatever the server does; each takes a free
  connection (opening one, up to ``max_connections``); latency is measured from the scheduled
  arrival, so a slow server cannot hide its queue (no coordinated omission).

It costs a few tens of microseconds of CPU per request, on the same cores as the server: say so
next to any number it produces.
"""

from __future__ import annotations

import asyncio
import collections
import statistics
import time
from dataclasses import dataclass, field


@dataclass
class Result:
    elapsed: float
    latencies: list[float] = field(default_factory=list)
    """Seconds, of every answered request (any status)."""
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    failures: int = 0
    """Connection errors / timeouts (no HTTP answer)."""
    not_sent: int = 0
    """Open loop: arrivals dropped because every connection was busy."""
    ok_latencies: list[float] = field(default_factory=list)

    def rps(self, status: int | None = None) -> float:
        n = sum(self.statuses.values()) if status is None else self.statuses[status]
        return n / self.elapsed

    def pct(self, q: float, *, ok_only: bool = True) -> float:
        data = sorted(self.ok_latencies if ok_only else self.latencies)
        if len(data) < 2:
            return float("nan")
        return statistics.quantiles(data, n=1000, method="inclusive")[int(q * 10) - 1]


def build_request(host: str, method: str, path: str, token: str, body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return (head + "\r\n").encode() + body


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return int(head[9:12])


async def closed_loop(host: str, port: int, request: bytes, concurrency: int, seconds: float) -> Result:
    conns = [await asyncio.open_connection(host, port) for _ in range(concurrency)]
    for r, w in conns:  # warm up
        for _ in range(5):
            await _exchange(r, w, request)
    res = Result(elapsed=0.0)
    deadline = time.perf_counter() + seconds

    async def worker(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while (start := time.perf_counter()) < deadline:
            try:
                status = await _exchange(r, w, request)
            except (OSError, asyncio.IncompleteReadError):
                res.failures += 1
                return
            lat = time.perf_counter() - start
            res.latencies.append(lat)
            res.statuses[status] += 1
            if status == 200:
                res.ok_latencies.append(lat)

    started = time.perf_counter()
    await asyncio.gather(*(worker(r, w) for r, w in conns))
    res.elapsed = time.perf_counter() - started
    for _, w in conns:
        w.close()
    return res


async def open_loop(
    host: str,
    port: int,
    request: bytes,
    rate: float,
    seconds: float,
    *,
    connections: int = 64,
    max_connections: int = 1024,
    timeout: float = 5.0,
) -> Result:
    """Send ``rate`` requests/s for ``seconds``, arrivals evenly spaced."""
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = [
        await asyncio.open_connection(host, port) for _ in range(connections)
    ]
    for r, w in idle:
        await _exchange(r, w, request)
    opened = len(idle)
    res = Result(elapsed=seconds)
    tasks: set[asyncio.Task[None]] = set()

    async def one(scheduled: float, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None) -> None:
        nonlocal opened
        try:
            if conn is None:
                conn = await asyncio.open_connection(host, port)
            status = await asyncio.wait_for(_exchange(*conn, request), timeout)
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            res.failures += 1
            if conn is not None:
                conn[1].close()
            opened -= 1
            return
        lat = time.perf_counter() - scheduled
        res.latencies.append(lat)
        res.statuses[status] += 1
        if status == 200:
            res.ok_latencies.append(lat)
        idle.append(conn)

    interval = 1.0 / rate
    start = time.perf_counter()
    n = 0
    total = int(rate * seconds)
    while n < total:
        now = time.perf_counter()
        due = start + n * interval
        if due > now:
            await asyncio.sleep(due - now)
            continue
        while n < total and start + n * interval <= now:  # every arrival that is due
            scheduled = start + n * interval
            n += 1
            if idle:
                conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = idle.pop()
            elif opened < max_connections:
                conn = None
                opened += 1
            else:
                res.not_sent += 1
                continue
            t = asyncio.ensure_future(one(scheduled, conn))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=timeout + 1)
    for _, w in idle:
        w.close()
    return res
