"""A/B the consume hot path of two revisions, side by side, to cancel a noisy machine's drift.

Both servers run at once (the old revision from a temporary git worktree, the new one from this
checkout), against one private Redis; `wrk -c 64` drives each in turn for a few seconds, and the
server process's CPU time is read from /proc, so the figure that matters is CPU per request.

    bash benchmarks/setup.sh
    .venv/bin/python benchmarks/ab_consume.py HEAD~1            # old = HEAD~1, new = working tree
    .venv/bin/python benchmarks/ab_consume.py HEAD~1 --rounds 5 --seconds 5
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import meter as M


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("old", help="git revision to compare against (e.g. HEAD~1)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    worktree = Path(tempfile.mkdtemp(prefix="tollgate-ab-")) / "old"
    subprocess.run(["git", "worktree", "add", "--detach", str(worktree), args.old], cwd=M.ROOT, check=True,
                   capture_output=True)  # fmt: skip
    bench = M.Bench(argparse.Namespace(quick=True, json=None))
    try:
        ports = {"old": bench.start_app(cwd=worktree), "new": bench.start_app()}
        pids = {
            name: next(p.pid for p in bench.servers if str(port) in p.args) for name, port in ports.items()
        }  # type: ignore[operator]
        orgs = {}
        for name, port in ports.items():
            bench.port = port
            orgs[name] = bench.new_org()
        print("| round | server | req/s | server CPU µs/request | p50 ms |\n|---|---|---|---|---|")
        for rnd in range(1, args.rounds + 1):
            for name, port in ports.items():
                bench.port = port
                bench._paths = {}
                c0, t0 = cpu_seconds(pids[name]), time.time()
                res = bench.wrk("ab", "/v1/quotas/consume", M.consume_body(orgs[name]), 64, args.seconds)
                used = cpu_seconds(pids[name]) - c0
                n = res["rps"] * (time.time() - t0)
                print(
                    f"| {rnd} | {name} | {res['rps']:,.0f} | {1e6 * used / n:,.0f} | {res['p50']:.1f} |",
                    flush=True,
                )
    finally:
        bench.close()
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(worktree)], cwd=M.ROOT, capture_output=True
        )


if __name__ == "__main__":
    main()
