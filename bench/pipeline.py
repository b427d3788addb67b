"""Pipeline bench: replay candles through real Celery worker processes on Redis and PostgreSQL.

1. Throughput: ``--events`` candles (``--symbols`` symbols, a zig-zag price so sma_cross(2,3) trades often —
   an order every ~5 candles, the worst case) or, with ``--data``, real candle files under the momentum strategy,
   replayed as fast as possible (in batches of MARKET_DATA_BATCH_SIZE); the clock stops when the pipeline is idle
   (queue and unacked set empty). Prints market_data events/s processed end to end and order_results/s.
2. Latency: a fresh symbol replayed at ``--rate`` events/s for ``--latency-seconds``; for every order the time
   from publishing its candle to receiving its order_result on the Redis ``order_results`` channel.
   Prints p50 / p99 / max.

Targets (issue 10): ≥ 1,000 events/s sustained; at 100 events/s p50 ≤ 15 ms, p99 ≤ 50 ms.

It creates (and drops first) its own database and flushes its own Redis database:

    .venv/bin/python bench/pipeline.py [--workers 2] [--concurrency 1] [--events 4000] [--rate 100]
        [--data ../shared/data/candles/*-5m.csv] [--strategy SPEC]
        [--database-url postgres://postgres@127.0.0.1:5432/cdb_bench] [--redis-url redis://127.0.0.1:6379/13]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import timeit
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BASE_TS = 1_735_689_600_000  # 2025-01-01 00:00 UTC
STEP = 60_000


def zigzag_prices(count: int, phase: int = 0) -> list[float]:
    """Zig-zags of eight candles on a rising trend (exits are profitable): sma_cross(2,3) trades every few."""
    prices = []
    for i in range(count):
        k = (i + phase) % 8
        prices.append(100 * (1 + 0.0004 * i) * (1 + 0.005 * (k if k <= 4 else 8 - k)))
    return prices


def zigzag_csv(path: Path, start: int, count: int, phase: int) -> None:
    rows = ["timestamp_ms,open,high,low,close,volume"]
    for i, price in enumerate(zigzag_prices(count, phase)):
        rows.append(f"{start + i * STEP},{price},{price * 1.001},{price * 0.999},{price},{1000 + i % 7}")
    path.write_text("\n".join(rows) + "\n")


def recreate_database(url: str) -> None:
    import psycopg2

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    conn = psycopg2.connect(
        host=parts.hostname, port=parts.port or 5432, user=parts.username, password=parts.password, dbname="postgres"
    )
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()


def start_workers(
    count: int, concurrency: int, env: dict, log_dir: Path, pool: str = "prefork"
) -> list[subprocess.Popen]:
    procs = []
    for i in range(count):
        log = (log_dir / f"worker{i}.log").open("w")
        args = [sys.executable, "-m", "celery", "-A", "cdb_project", "worker", "-l", "WARNING", "-P", pool]
        args += ["-c", str(concurrency), "-n", f"bench{i}@%h", "--without-gossip", "--without-mingle"]
        args += ["--without-heartbeat"]
        procs.append(subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
    import redis

    from cdb_project.celery import app

    client = redis.Redis.from_url(env["REDIS_URL"])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if client.scard(f"_kombu.binding.{app.conf.control_exchange}.pidbox") >= count:
            replies = app.control.ping(timeout=1.0) or []
            if len(replies) >= count:
                return procs
        time.sleep(0.2)
    raise RuntimeError(f"workers not ready; see {log_dir}")


class Listener:
    """Receives every order_result on Redis pub/sub with its arrival time."""

    def __init__(self, url: str):
        import redis

        self.received: dict[str, float] = {}
        self.pubsub = redis.Redis.from_url(url).pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe("order_results")
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.stop = False
        self.thread.start()

    def _run(self) -> None:
        while not self.stop:
            message = self.pubsub.get_message(timeout=0.05)
            if message:
                now = time.time()
                self.received.setdefault(json.loads(message["data"])["client_order_id"], now)


def bench_environment(database_url: str, strategy: str, log_level: str = "WARNING") -> dict[str, str]:
    """The settings of the bench's pipeline: a risk setup that lets the zig-zags trade often."""
    return {
        "DATABASE_URL": database_url,
        "STRATEGY": strategy,
        "PAPER_FAILURE_RATE": "0",
        "MAX_ORDERS_PER_MINUTE": "600",
        "MAX_EXPOSURE_PCT": "1.0",
        "MAX_DAILY_DRAWDOWN_PCT": "0.20",
        "MAX_POSITION_PCT": "0.25",
        "POSITION_SIZE_PCT": "0.02",
        "LOG_LEVEL": log_level,
        "CONN_MAX_AGE": "600",
        "DJANGO_SETTINGS_MODULE": "cdb_project.settings",
    }


def prepare(database_url: str, redis_url: str, strategy: str, log_level: str = "WARNING") -> None:
    """The bench's environment (a risk setup that lets the zig-zags trade often), a fresh database and Redis
    database, Django set up and migrated; prints the machine's speed."""
    os.environ.update(bench_environment(database_url, strategy, log_level), REDIS_URL=redis_url)
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    recreate_database(database_url)
    print(machine_speed(database_url))

    import django

    django.setup()
    import redis
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    redis.Redis.from_url(redis_url).flushdb()


def machine_speed(url: str) -> str:
    """PostgreSQL's round trip and a one-row commit as this machine does them now: the figures depend on them
    (on the shared development machine both varied by 4x within an hour)."""
    import psycopg2

    parts = urlsplit(url)
    conn = psycopg2.connect(
        host=parts.hostname, port=parts.port or 5432, user=parts.username, password=parts.password, dbname="postgres"
    )
    with conn.cursor() as cur:
        start = time.perf_counter()
        for _ in range(500):
            cur.execute("SELECT 1")
            cur.fetchall()
        round_trip = (time.perf_counter() - start) / 500 * 1000
        cur.execute("CREATE TEMP TABLE cdb_speed (v int)")
        conn.commit()
        start = time.perf_counter()
        for _ in range(200):
            cur.execute("INSERT INTO cdb_speed VALUES (1)")
            conn.commit()
        commit = (time.perf_counter() - start) / 200 * 1000
    conn.close()
    load = os.getloadavg()[0]
    cpu = min(timeit.repeat("sum(range(10**6))", number=1, repeat=5)) * 1000
    return (
        f"machine: PostgreSQL round trip {round_trip:.3f} ms, insert + commit {commit:.3f} ms; "
        f"Python sum(range(10**6)) {cpu:.0f} ms; load {load:.2f}"
    )


def cpu_seconds(workers: list[subprocess.Popen]) -> dict[str, float]:
    """CPU time used so far (user + system) by this process (the feed, and the listener thread that receives the
    order_results), the workers (with their pool children), PostgreSQL and Redis, read from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    worker_pids = {proc.pid for proc in workers}
    totals = {"feed": 0.0, "workers": 0.0, "postgres": 0.0, "redis": 0.0}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        pid, ppid, used = int(entry.name), int(fields[1]), (int(fields[11]) + int(fields[12])) / tick
        if pid == os.getpid():
            totals["feed"] += used
        elif pid in worker_pids or ppid in worker_pids:
            totals["workers"] += used
        elif name.startswith("postgres"):
            totals["postgres"] += used
        elif name.startswith("redis-server"):
            totals["redis"] += used
    return totals


def cpu_per_event(before: dict[str, float], after: dict[str, float], events: int) -> str:
    parts = [f"{name} {(after[name] - before[name]) / events * 1000:.2f}" for name in before]
    total = sum(after.values()) - sum(before.values())
    return f"  CPU per event, ms: {', '.join(parts)}; all {total / events * 1000:.2f}"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/cdb_bench")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=1, help="prefork processes per worker")
    parser.add_argument(
        "--pool", default="prefork", choices=["prefork", "solo"], help="Celery pool (prefork is what is deployed)"
    )
    parser.add_argument("--events", type=int, default=4000, help="throughput phase: candles in all")
    parser.add_argument("--symbols", type=int, default=8, help="throughput phase: symbols")
    parser.add_argument("--rate", type=float, default=100.0, help="latency phase: events/s")
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument(
        "--data",
        nargs="+",
        metavar="CSV",
        help="throughput phase: replay these candle files (e.g. ../shared/data/candles/*.csv) instead of zig-zags",
    )
    parser.add_argument(
        "--strategy",
        help="default: sma_cross:fast=2,slow=3 on zig-zags (an order every ~5 candles), momentum with --data",
    )
    args = parser.parse_args()
    strategy = args.strategy or ("momentum" if args.data else "sma_cross:fast=2,slow=3")

    prepare(args.database_url, args.redis_url, strategy)
    from execution.models import Order
    from ground import bus
    from marketdata.feeds.replay import Replay, resolve_sources
    from marketdata.watchlist import register_feed_symbols
    from risk.data_stale import StaleWatch
    from risk.decision_service import expire_waiting_orders

    tmp = Path(tempfile.mkdtemp(prefix="cdb-bench-"))
    env = {**os.environ}
    workers = start_workers(args.workers, args.concurrency, env, tmp, args.pool)
    listener = Listener(args.redis_url)
    try:
        # --- 1. throughput ------------------------------------------------------------------------------
        per_symbol = args.events // args.symbols
        files = []
        if args.data:
            files = [str(Path(name).resolve()) for name in args.data]
        else:
            for s in range(args.symbols):
                path = tmp / f"T{s:02d}_USDT-1m.csv"
                zigzag_csv(path, BASE_TS, per_symbol, phase=s)
                files.append(str(path))
        sources = resolve_sources(files, None, None)
        symbols = {source.symbol for source in sources}
        register_feed_symbols(sorted(symbols | {"LAT_USDT"}), "replay")
        print(f"strategy {strategy}; market_data batches of {Replay(sources).batch_size}")
        cpu_before = cpu_seconds(workers)
        start = time.perf_counter()
        replay = Replay(sources, speed=None)
        summary = replay.run()
        published_at = time.perf_counter()
        bus.wait_until_idle(timeout=600, poll=0.01)
        # As run_feed's replay at the end of its data: an order decided at its symbol's last candle waits for a next
        # candle that never comes, so it expires (only now: the workers were still on the candles before it).
        StaleWatch(on_without_data=expire_waiting_orders).data_ended(replay.clock.now_ms(), sorted(symbols))
        elapsed = time.perf_counter() - start
        events = summary.published
        orders = Order.objects.exclude(status="PENDING").count()
        time.sleep(0.2)
        print(f"throughput: {events} market_data events through {args.workers} worker(s) x {args.concurrency}")
        print(f"  publish (feed side): {events / (published_at - start):,.0f} events/s")
        print(f"  market_data -> pipeline idle: {elapsed:.2f} s = {events / elapsed:,.0f} events/s sustained")
        print(f"  order_results: {orders} = {orders / elapsed:,.1f}/s (received on Redis: {len(listener.received)})")
        print(cpu_per_event(cpu_before, cpu_seconds(workers), events))
        pending = Order.objects.filter(status="PENDING").count()
        expired = Order.objects.filter(status="EXPIRED").count()
        from django.db.models import Count

        from risk.models import TradingState

        print(
            f"  orders left PENDING: {pending}; expired at the end of the data: {expired}; "
            f"trading state {TradingState.load().state}"
        )
        purposes = Order.objects.values_list("purpose").annotate(n=Count("id")).order_by("purpose")
        print("  orders by purpose: " + ", ".join(f"{purpose} {n}" for purpose, n in purposes))

        if args.data:
            print("latency: measured on zig-zags (run without --data)")
            return
        # --- 2. latency at a fixed rate ---------------------------------------------------------------
        count = int(args.rate * args.latency_seconds)
        path = tmp / "LAT_USDT-1m.csv"
        zigzag_csv(path, BASE_TS + per_symbol * STEP, count, phase=0)  # sma_cross trades it; momentum rarely
        published: dict[int, float] = {}
        interval = 1.0 / args.rate

        class Paced(Replay):
            def _publish(self, symbol, interval_name, ts, candle):
                target = self.t0 + self.n * interval
                delay = target - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                published[ts] = time.time()
                self.n += 1
                super()._publish(symbol, interval_name, ts, candle)

        paced = Paced(resolve_sources([str(path)], None, None), speed=None, batch_size=1)  # each candle as it comes
        paced.t0, paced.n = time.perf_counter(), 0
        before = set(listener.received)
        cpu_before = cpu_seconds(workers)
        paced.run()
        rate = paced.n / (time.perf_counter() - paced.t0)
        bus.wait_until_idle(timeout=300, poll=0.01)
        cpu_after = cpu_seconds(workers)
        time.sleep(0.3)
        latencies = []
        for order in Order.objects.filter(symbol="LAT_USDT").values("client_order_id", "source_timestamp"):
            arrived = listener.received.get(order["client_order_id"])
            sent = published.get(order["source_timestamp"])
            if arrived is not None and sent is not None and order["client_order_id"] not in before:
                latencies.append((arrived - sent) * 1000)
        print(f"latency: {paced.n} events at {rate:,.1f} events/s, {len(latencies)} orders")
        print(cpu_per_event(cpu_before, cpu_after, paced.n))
        if latencies:
            print(
                f"  market_data published -> order_result received: p50 {statistics.median(latencies):.1f} ms, "
                f"p99 {percentile(latencies, 0.99):.1f} ms, max {max(latencies):.1f} ms"
            )
    finally:
        listener.stop = True
        for proc in workers:
            proc.terminate()
        for proc in workers:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        print(f"worker logs: {tmp}")


if __name__ == "__main__":
    main()
