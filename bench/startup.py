"""Start-up: the wall time of `manage.py help`, `manage.py backtest --help` and `manage.py risk_status`, each the
best of --repeat runs of a fresh interpreter (what a user waits for before anything happens).

risk_status reads the database: the runs use a SQLite file of their own in a temporary directory, migrated
once before the timing, unless DATABASE_URL is set. Target (issue "Backtest in about a second"): backtest
--help under 1 s on a 2-core machine (3.5 s before).

    .venv/bin/python bench/startup.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = (["help"], ["backtest", "--help"], ["risk_status"])


def wall(args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "DATABASE_URL": os.environ.get("DATABASE_URL", f"sqlite:///{tmp}/startup.sqlite3")}
        subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
        bare = min(wall(["--version"], env) for _ in range(args.repeat))
        print(f"{'manage.py --version':<28} {bare:6.3f} s  (the floor: interpreter, django.setup(), no command)")
        for command in COMMANDS:
            best = min(wall(command, env) for _ in range(args.repeat))
            print(f"{'manage.py ' + ' '.join(command):<28} {best:6.3f} s")
    print(f"(best of {args.repeat} each)  load average: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
