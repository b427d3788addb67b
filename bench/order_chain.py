"""Bench: what one market_data event costs a worker, in process, without the broker — the floor of the latency.

Each zig-zag candle (sma_cross(2,3): an order every ~4 candles) is stored and published, then handed to the
market_data task as a worker runs it (consumer wrapper; a signal is stored, decided and filled in one transaction).
Nothing consumes the broker queue. Prints p50 / p90 per candle, separately for candles that end in an order and
for the others, with the SQL statements they ran. The first ``--warm-up`` candles are not counted. ``--history N``
stores N older candles of the symbol first (a system that has run for a while: 130,000 is three months of 1m).

It creates (and drops first) its own database and flushes its own Redis database:

    .venv/bin/python bench/order_chain.py [--candles 1200] [--warm-up 100] [--history N] [--show-sql]
        [--database-url postgres://postgres@127.0.0.1:5432/cdb_bench_chain] [--redis-url redis://127.0.0.1:6379/12]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.pipeline import BASE_TS, STEP, percentile, prepare, zigzag_prices  # noqa: E402


def counting(statements: list[int], texts: list[str] | None = None):
    """A database execute wrapper that counts the statements (cheaper than capturing them) and, given ``texts``,
    keeps their SQL."""

    def wrapper(execute, sql, params, many, context):
        statements[0] += 1
        if texts is not None:
            texts.append(sql)
        return execute(sql, params, many, context)

    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candles", type=int, default=1200)
    parser.add_argument("--warm-up", type=int, default=100)
    parser.add_argument("--history", type=int, default=0, help="older candles stored before the bench")
    parser.add_argument("--show-sql", action="store_true", help="print the statements of the last trading candle")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/cdb_bench_chain")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    args = parser.parse_args()
    prepare(args.database_url, args.redis_url, "sma_cross:fast=2,slow=3", log_level="ERROR")
    from cdb_project.ops import freeze_startup_objects

    freeze_startup_objects()  # as a worker process does
    import redis
    from django.db import connection

    from execution.models import Order
    from ground import bus
    from marketdata.ingest import bulk_store, market_data_event
    from marketdata.watchlist import register_feed_symbols
    from trading.tasks import on_market_data

    register_feed_symbols(["CHAIN_USDT"], "replay")
    older = zigzag_prices(args.history)
    for start in range(0, args.history, 10_000):
        bulk_store(
            [
                ("CHAIN_USDT", "1m", BASE_TS - (args.history - n) * STEP, p, p * 1.001, p * 0.999, p, 1000)
                for n, p in enumerate(older[start : start + 10_000], start)
            ]
        )
    if args.history:
        connection.cursor().execute("VACUUM ANALYZE")
        print(f"{args.history:,} older candles of CHAIN_USDT stored")
    trading: list[tuple[float, float, int]] = []  # wall ms, this process's CPU ms, SQL statements
    other: list[tuple[float, float, int]] = []
    orders, last_trading_sql = 0, []
    for n, price in enumerate(zigzag_prices(args.candles)):
        ts = BASE_TS + n * STEP
        event = bus.publish(
            market_data_event("CHAIN_USDT", "1m", ts, price, price * 1.001, price * 0.999, price, 1000 + n % 7)
        )
        redis.Redis.from_url(args.redis_url).delete("celery")  # no worker here: nothing is to wait in the queue
        statements, texts = [0], [] if args.show_sql else None
        with connection.execute_wrapper(counting(statements, texts)):
            start, cpu = time.perf_counter(), time.process_time()
            on_market_data(event)
            elapsed, cpu = (time.perf_counter() - start) * 1000, (time.process_time() - cpu) * 1000
        now = Order.objects.count()
        if n >= args.warm_up:
            (trading if now > orders else other).append((elapsed, cpu, statements[0]))
        if now > orders and texts is not None:
            last_trading_sql = texts
        orders = now

    def line(name: str, rows: list[tuple[float, float, int]]) -> str:
        wall, cpu = [row[0] for row in rows], [row[1] for row in rows]
        return (
            f"  {name}: {len(rows)} candles, p50 {statistics.median(wall):.1f} ms, p90 {percentile(wall, 0.9):.1f} ms"
            f" (CPU of this process p50 {statistics.median(cpu):.1f} ms),"
            f" {statistics.median([row[2] for row in rows]):.0f} SQL statements"
        )

    print(f"in-process cost of a market_data task, {args.candles} candles:")
    print(line("ending in an order (signal, decision and fill)", trading))
    print(line("not trading", other))
    for number, sql in enumerate(last_trading_sql, 1):
        print(f"  {number:2d}. {sql[:160]}")


if __name__ == "__main__":
    main()
