"""Benchmark: replay every 5m file of ../shared/data/candles into PostgreSQL and into SQLite.

    .venv/bin/python bench/feed.py                 # both stores, --no-publish and publishing through Redis
    .venv/bin/python bench/feed.py --eager         # also publishing with the whole pipeline in-process
    .venv/bin/python bench/feed.py --stores sqlite

Each measurement runs in a fresh child process on its own store: a PostgreSQL database created and dropped
for the run (``cdb_bench_feed``) and a temporary SQLite file. Only the replay is timed (start-up and
migrations are not). "publish" sends every stored candle through ground.bus.publish (validated,
PUBLISHed on Redis and the signal task enqueued on a dedicated Redis database, flushed afterwards; nothing
consumes it); "eager" runs the consuming tasks in-process, i.e. the whole pipeline per candle.
Target: ≥ 5,000 candles/s stored with --no-publish.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "candles"
PG_ADMIN = "postgres://postgres@127.0.0.1:5432/postgres"
PG_DB = "cdb_bench_feed"
REDIS = "redis://127.0.0.1:6379/14"  # flushed after the run: keep it apart from the tests' databases


def inner(mode: str) -> None:
    """Child process: migrate this store, replay the files, print one JSON line."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cdb_project.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from marketdata.feeds.replay import Replay, resolve_sources
    from marketdata.models import Candle

    files = sorted(str(p) for p in DATA.glob("*-5m.csv"))
    sources = resolve_sources(files, None, None)
    replay = Replay(sources, publish=mode != "no-publish")
    started = time.perf_counter()
    summary = replay.run()
    elapsed = time.perf_counter() - started
    print(
        json.dumps(
            {
                "rows": summary.rows_read,
                "stored": summary.stored,
                "published": summary.published,
                "in_store": Candle.objects.count(),
                "seconds": elapsed,
            }
        )
    )


def _pg(sql: str) -> None:
    import psycopg2

    conn = psycopg2.connect(PG_ADMIN)
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute(sql)
    conn.close()


def measure(store: str, mode: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["LOG_LEVEL"] = "ERROR"
    with tempfile.TemporaryDirectory() as tmp:
        if store == "postgresql":
            _pg(f"DROP DATABASE IF EXISTS {PG_DB}")
            _pg(f"CREATE DATABASE {PG_DB}")
            env["DATABASE_URL"] = PG_ADMIN.rsplit("/", 1)[0] + "/" + PG_DB
        else:
            env["DATABASE_URL"] = f"sqlite:///{Path(tmp) / 'bench.sqlite3'}"
        if mode == "publish":
            env["REDIS_URL"] = REDIS
        try:
            proc = subprocess.run(
                [sys.executable, __file__, "--inner", mode], cwd=ROOT, env=env, capture_output=True, text=True
            )
        finally:
            if store == "postgresql":
                _pg(f"DROP DATABASE IF EXISTS {PG_DB}")
            if mode == "publish":
                import redis

                redis.Redis.from_url(REDIS).flushdb()
    if proc.returncode != 0:
        raise SystemExit(f"{store}/{mode} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inner", help=argparse.SUPPRESS)
    parser.add_argument("--stores", default="postgresql,sqlite")
    parser.add_argument("--eager", action="store_true", help="also measure with the whole pipeline in-process")
    parser.add_argument("--no-redis", action="store_true", help="skip the publishing-through-Redis measurement")
    args = parser.parse_args()
    if args.inner:
        inner(args.inner)
        return
    modes = ["no-publish"] + ([] if args.no_redis else ["publish"]) + (["eager"] if args.eager else [])
    files = sorted(DATA.glob("*-5m.csv"))
    print(f"replaying {len(files)} files of {DATA} (5m candles)")
    print(f"{'store':<11} {'mode':<11} {'rows':>7} {'stored':>7} {'published':>9} {'seconds':>8} {'candles/s':>10}")
    for store in args.stores.split(","):
        for mode in modes:
            result = measure(store, mode)
            rate = result["stored"] / result["seconds"]
            print(
                f"{store:<11} {mode:<11} {result['rows']:>7} {result['stored']:>7} {result['published']:>9} "
                f"{result['seconds']:>8.2f} {rate:>10,.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
