"""Start-up: the wall time of `manage.py help`, `manage.py backtest --help` and `manage.py risk_status`, each the
best of --repeat runs of a fresh interpreter (what a user waits for before anything happens).

risk_status reads the database: the runs use a SQLite file of their own in a temporary directory, migrated
once before the timing, unless DATABASE_URL is set. Target (issue "Backtest in about a second"): backtest
--help under 1 s on a 2-core machine (3.5 s before).

    .venv/bin/python bench/startup.py [--repeat 5] [--root OTHER_TREE --root .]  (trees side by side)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from backtest import compile_tree  # bench/backtest.py, beside this script

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = (["help"], ["backtest", "--help"], ["risk_status"])


def wall(args: list[str], env: dict[str, str], root: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "manage.py", *args], cwd=root, env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--root", action="append", type=Path, help="project trees to time (default: this one)")
    args = parser.parse_args()
    roots = args.root or [ROOT]
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "DATABASE_URL": os.environ.get("DATABASE_URL", f"sqlite:///{tmp}/startup.sqlite3")}
        subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=roots[0], env=env, check=True)
        for root in roots:
            compile_tree(root)
        for command in (["--version"], *COMMANDS):  # --version: django.setup() and no command, the floor
            times = {root: float("inf") for root in roots}
            for _ in range(args.repeat):  # the trees interleaved, so they share the machine's moods
                for root in roots:
                    times[root] = min(times[root], wall(command, env, root))
            print(f"{'manage.py ' + ' '.join(command):<28}", "  ".join(f"{t:6.3f} s" for t in times.values()))
    print(f"(best of {args.repeat} each; columns: {', '.join(str(root) for root in roots)})")
    print(f"load average: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
