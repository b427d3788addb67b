"""Optimization speed: trials per minute of `manage.py optimize` over every 5m file of ../shared/data/candles
(34,513 candles) with 1 and with 2 workers of the ``optimize`` queue, against the plain `manage.py backtest` of
the same data, and side by side with Freqtrade's hyperopt.

Needs PostgreSQL and Redis (``DATABASE_URL``, ``REDIS_URL``; the database migrated). In each of --rounds rounds
(1 then 2 workers; every other round 2 then 1, so a drifting load favours neither) the bench measures the plain
backtest (best of 3), then for each worker count starts that many fresh workers (``celery -A cdb_project worker
-Q optimize -P solo``, as docs/optimization.md runs them; ``--pool prefork`` for ``-P prefork -c 1``, to compare;
with --own-sessions each in its own session, as separately started services are), runs a new
study of --trials trials on the 3-parameter space of the Freqtrade comparison (ema_fast 5–20, ema_slow 21–60,
rsi_max 60–80, objective sharpe) and prints:

* the load average when the run started;
* trials/min over the whole command (start-up, the workers' first load, every trial, the report);
* trials/min steady: between the first and the last trial finished;
* the median and the slowest trial (the worker's time for one trial, its first load included) against the plain
  backtest's wall time;
* CPU per trial of the command and of the workers (their start-up and first load included).

With ``--freqtrade`` (after ``bash ../shared/compare/freqtrade/setup.sh``, ``freqtrade[hyperopt]`` in its venv and
EmaRsiCrossHO.py in its strategies), Freqtrade's hyperopt (``run_ft_hyperopt.py EPOCHS 2``: the same candles and
space, ``-j 2``) runs after each round, and the ratio of 2-worker trials/min to its epochs/min (whole command both)
is printed. Targets: 2 workers ≥ 1.7× 1 worker; 2 workers ≥ 5× Freqtrade; no trial slower than the plain backtest.

    .venv/bin/python bench/optimize.py [--trials 120] [--rounds 2] [--own-sessions] [--pool solo|prefork]
        [--freqtrade] [--epochs 20]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CANDLES = ROOT.parent / "shared" / "data" / "candles"
FREQTRADE = ROOT.parent / "shared" / "compare" / "freqtrade"
FT_PYTHON = Path("/tmp/ftvenv/bin/python")
SPACE = ["--space", "ema_fast=5:20", "--space", "ema_slow=21:60", "--space", "rsi_max=60:80:int"]


def start_workers(count: int, log_dir: Path, own_sessions: bool, pool: str = "solo") -> list[subprocess.Popen]:
    """``count`` workers of the optimize queue; ``own_sessions``: each in its own session, as separately started
    services are (Linux's autogroup scheduling shares the CPU between sessions first: on a loaded machine, workers
    started in this bench's session would share this session's CPU whatever their number)."""
    workers = []
    for number in range(count):
        log = log_dir / f"bench{number}.log"
        argv = [sys.executable, "-m", "celery", "-A", "cdb_project", "worker", "-Q", "optimize", "-c", "1", "-P",
                pool, "-n", f"bench{number}-{os.getpid()}@%h", "-l", "INFO", "--without-gossip",
                "--without-mingle", "--without-heartbeat"]  # fmt: skip
        output = log.open("w")
        workers.append(
            subprocess.Popen(argv, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT, start_new_session=own_sessions)
        )
    deadline = time.monotonic() + 90
    for number in range(count):
        while " ready." not in (log_dir / f"bench{number}.log").read_text(errors="replace"):
            if time.monotonic() > deadline:
                raise SystemExit(f"worker {number} not ready: see {log_dir}")
            time.sleep(0.2)
    return workers


def stop(workers: list[subprocess.Popen]) -> None:
    for worker in workers:
        worker.terminate()
    for worker in workers:
        worker.wait(30)


def plain_backtest(files: list[str]) -> float:
    """Best wall seconds of 3 plain `manage.py backtest` runs (the candles this bench optimizes on)."""
    best = None
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "manage.py", "backtest", "--data", *files, "--strategy", "momentum", "--capital", "1",
             "--no-progress"],
            cwd=ROOT, check=True, capture_output=True,
        )  # fmt: skip
        wall = time.perf_counter() - started
        best = wall if best is None else min(best, wall)
    return best


def optimize(files: list[str], workers: int, trials: int, out: Path) -> dict:
    study = f"bench-{workers}w-{datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "manage.py", "optimize", "--data", *files, "--strategy", "momentum", *SPACE, "--capital", "1",
         "--trials", str(trials), "--workers", str(workers), "--seed", "7", "--study", study, "--json", str(out),
         "--no-progress"],
        cwd=ROOT, check=True, capture_output=True,
    )  # fmt: skip
    wall = time.perf_counter() - started
    document = json.loads(out.read_text())
    done = [datetime.fromisoformat(t["finished_at"]) for t in document["trials"] if t["finished_at"]]
    span = (max(done) - min(done)).total_seconds()
    durations = [t["duration"] for t in document["trials"] if t["duration"] is not None]
    return {
        "workers": workers,
        "trials": len(document["trials"]),
        "wall_s": wall,
        "per_min": 60 * len(document["trials"]) / wall,
        "steady_per_min": 60 * (len(done) - 1) / span if span else None,
        "slowest_trial_s": max(durations),
        "median_trial_s": sorted(durations)[len(durations) // 2],
        "best_value": document["best_value"],
        "command_cpu_s": _cpu_since(before),
    }


def _cpu_since(before) -> float:
    """CPU seconds (user + system) of the children waited for since ``before``."""
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def measure(files: list[str], count: int, trials: int, tmp: Path, own_sessions: bool, pool: str) -> dict:
    """One optimize run with ``count`` fresh workers, the workers' CPU (start-up and first load included) added."""
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    workers = start_workers(count, tmp, own_sessions, pool)
    try:
        result = optimize(files, count, trials, tmp / f"{count}.json")
    finally:
        stop(workers)
    result["workers_cpu_s"] = _cpu_since(before) - result["command_cpu_s"]
    result["load"] = load
    return result


def freqtrade(epochs: int) -> dict:
    started = time.perf_counter()
    answer = subprocess.run(
        [str(FT_PYTHON), str(FREQTRADE / "run_ft_hyperopt.py"), str(epochs), "2"],
        cwd=FREQTRADE, capture_output=True, text=True,
    )  # fmt: skip
    wall = time.perf_counter() - started
    if answer.returncode != 0 or "rc 0" not in answer.stderr and "rc None" not in answer.stderr:
        tail = "\n".join(answer.stderr.splitlines()[-5:])
        print(f"freqtrade hyperopt: {tail}", file=sys.stderr)
    return {"epochs": epochs, "wall_s": wall, "per_min": 60 * epochs / wall}


def report(r: dict, plain: float) -> str:
    steady = "–" if r["steady_per_min"] is None else f"{r['steady_per_min']:.1f}"
    per_trial = 1000 / r["trials"]
    return (
        f"{r['workers']} worker(s) [load {r['load']:.1f}]: {r['trials']} trials in {r['wall_s']:.1f} s = "
        f"{r['per_min']:.1f} trials/min (steady {steady}/min); trial median {r['median_trial_s']:.2f} s, slowest "
        f"{r['slowest_trial_s']:.2f} s ({'faster' if r['slowest_trial_s'] < plain else 'SLOWER'} than the plain "
        f"backtest's {plain:.2f} s); CPU per trial: command {r['command_cpu_s'] * per_trial:.0f} ms, workers "
        f"{r['workers_cpu_s'] * per_trial:.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=120)
    parser.add_argument("--rounds", type=int, default=2, help="rounds of 1 and 2 workers (every other one 2 first)")
    parser.add_argument("--freqtrade", action="store_true", help="Freqtrade's hyperopt after every round")
    parser.add_argument("--epochs", type=int, default=20, help="Freqtrade hyperopt epochs")
    parser.add_argument("--own-sessions", action="store_true", help="each worker in its own session (setsid)")
    parser.add_argument(
        "--pool", choices=("solo", "prefork"), default="solo", help="the workers' pool (-P; docs: solo)"
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the workers are stopped on the way out
    if not os.environ.get("REDIS_URL") or not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        raise SystemExit("set DATABASE_URL=postgres://… and REDIS_URL=redis://… (a migrated database)")
    files = sorted(str(p) for p in CANDLES.glob("*-5m.csv"))
    print(f"{datetime.now():%Y-%m-%d %H:%M}  {os.cpu_count()} CPUs  load average {os.getloadavg()}")
    print(f"workers -P {args.pool}, {'each in its own session' if args.own_sessions else 'in the bench session'}")
    print(f"files: {len(files)} ({', '.join(Path(f).name for f in files)})")
    ratios, versus = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for number in range(args.rounds):
            plain = plain_backtest(files)
            print(f"round {number + 1}: plain manage.py backtest {plain:.2f} s wall (best of 3)")
            results = {}
            for count in (1, 2) if number % 2 == 0 else (2, 1):
                results[count] = measure(files, count, args.trials, Path(tmp), args.own_sessions, args.pool)
                print("  " + report(results[count], plain), flush=True)
            ratios.append(results[2]["per_min"] / results[1]["per_min"])
            steady = [results[c]["steady_per_min"] for c in (1, 2)]
            print(f"  2 workers / 1 worker: {ratios[-1]:.2f}× (steady {steady[1] / steady[0]:.2f}×; target ≥ 1.7×)")
            if args.freqtrade:
                ft = freqtrade(args.epochs)
                versus.append(results[2]["per_min"] / ft["per_min"])
                print(
                    f"  freqtrade hyperopt -j 2: {ft['epochs']} epochs in {ft['wall_s']:.1f} s = "
                    f"{ft['per_min']:.1f} epochs/min; ours with 2 workers / freqtrade: {versus[-1]:.1f}× (target ≥ 5×)"
                )
    print(f"2 workers / 1 worker by round: {', '.join(f'{r:.2f}×' for r in ratios)}")
    if versus:
        print(f"2 workers / freqtrade by round: {', '.join(f'{v:.1f}×' for v in versus)}")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
