"""Redis time per call of ``consume.lua``: this checkout against other revisions, side by side.

Each revision's script and its ``QuotaConfig.to_redis`` (a hash before 2026-11-25, a MessagePack
string after) are taken from git, seeded into one private redis-server (AOF off) with the same
team-like config (4 categories, on-demand prices, errors unlimited), and called in pipelines of
1,000 from one client; Redis' own ``INFO commandstats`` ``usec_per_call`` is the figure. Rounds
alternate between revisions so a busy machine affects them alike.

    .venv/bin/python benchmarks/script_cost.py 60d8812          # before the MessagePack config
    .venv/bin/python benchmarks/script_cost.py 60d8812 --rounds 5
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.infra.embedded_redis import EmbeddedRedis  # noqa: E402
from app.plans import CATEGORIES  # noqa: E402


def at(rev: str, path: str) -> str:
    if rev == "HEAD+":
        return (ROOT / path).read_text()
    git = ["git", "show", f"{rev}:{path}"]
    return subprocess.run(git, cwd=ROOT, capture_output=True, text=True, check=True).stdout


def config_module(rev: str, tmp: Path) -> Any:
    """The revision's ``app/metering/config.py`` as a module (it imports today's app packages)."""
    path = tmp / f"config_{rev.replace('+', '_')}.py"
    path.write_text(at(rev, "app/metering/config.py"))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("revisions", nargs="*", default=[], help="git revisions to compare with this checkout")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--calls", type=int, default=10_000)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tollgate-scriptcost-"))
    server = EmbeddedRedis(tmp / "redis", appendonly=False).start()
    r = redis.Redis(port=server.port)
    now = int(time.time())
    subjects = []
    try:
        for rev in [*args.revisions, "HEAD+"]:
            cfg_mod = config_module(rev, tmp)
            limits = {c: (-1 if c == "error" else 50_000) for c in CATEGORIES}
            cfg = cfg_mod.QuotaConfig(
                organization_id=f"ref-{rev}", version=1, suspended=False, period_start=now - 86_400,
                period_end=now + 20 * 86_400, limits=limits, on_demand_cents=dict.fromkeys(CATEGORIES, 0.05),
                plan="team", plan_version=1,
            )  # fmt: skip
            key = f"tg:{{ref-{rev}}}:config"
            packed = cfg.to_redis()
            if isinstance(packed, dict):
                r.hset(key, mapping=packed)
            else:
                r.set(key, packed)
            sha = r.script_load(at(rev, "app/metering/lua/consume.lua"))
            k = [key, f"tg:{{ref-{rev}}}:u", f"tg:{{ref-{rev}}}:idem:"]
            subjects.append((rev, ["EVALSHA", sha, 3, *k, now, 86_400, "", 86_400, "", "", "error", 1, ""]))
        results: dict[str, list[float]] = {rev: [] for rev, _ in subjects}
        for _ in range(args.rounds):
            for rev, call in subjects:
                r.config_resetstat()
                for _ in range(args.calls // 1000):
                    pipe = r.pipeline(transaction=False)
                    for _ in range(1000):
                        pipe.execute_command(*call)
                    pipe.execute()
                results[rev].append(float(r.info("commandstats")["cmdstat_evalsha"]["usec_per_call"]))
        for rev, values in results.items():
            name = "this checkout" if rev == "HEAD+" else rev
            print(f"{name:>14}: {' / '.join(f'{v:.1f}' for v in values)} µs per call (min {min(values):.1f})")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
