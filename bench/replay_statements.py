"""Statements, transactions and CPU of the live pipeline's tasks, in process: a lockstep replay on PostgreSQL.

``manage.py run_feed --source replay --lockstep`` with the tasks run in this process (no REDIS_URL), on zig-zag
candles of ``--symbols`` symbols (sma_cross:fast=2,slow=3 and the risk setup of bench/pipeline.py: an order every
~5 candles). Counts every statement sent through Django (``connection.execute_wrapper``) and the committed
transactions (``pg_stat_database.xact_commit``, autocommit reads included), and the CPU time of this process. Unlike
bench/pipeline.py, the counts do not move with the machine's load; ``--root`` runs another checkout of the project
(e.g. a worktree of an older commit, with its .venv linked) for a side-by-side. It creates (and drops first) its own
database:

    .venv/bin/python bench/replay_statements.py [--root .] [--symbols 4] [--candles 375] [--top 25]
        [--database-url postgres://postgres@127.0.0.1:5432/cdb_bench]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(Path(__file__).resolve().parents[1]), help="the checkout to run")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/cdb_bench")
    parser.add_argument("--symbols", type=int, default=4)
    parser.add_argument("--candles", type=int, default=375, help="per symbol")
    parser.add_argument("--top", type=int, default=25, help="the most frequent statements to print")
    args = parser.parse_args()
    root = Path(args.root).resolve()
    here = importlib.util.spec_from_file_location("cdb_bench_pipeline", Path(__file__).with_name("pipeline.py"))
    bench_pipeline = importlib.util.module_from_spec(here)
    here.loader.exec_module(bench_pipeline)  # this checkout's settings of the bench, whichever checkout runs
    os.chdir(root)
    sys.path.insert(0, str(root))
    for name in ("REDIS_URL", "STRATEGY_CACHE_URL", "PROMETHEUS_MULTIPROC_DIR"):
        os.environ.pop(name, None)  # tasks in process, the strategy cache in memory
    from bench import pipeline  # the checkout's own bench: its zig-zags and its database helper

    os.environ.update(bench_pipeline.bench_environment(args.database_url, "sma_cross:fast=2,slow=3"))
    pipeline.recreate_database(args.database_url)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.db.models import Count

    from execution.models import Order

    call_command("migrate", verbosity=0)
    data = Path(tempfile.mkdtemp(prefix="cdb-statements-"))
    files = []
    for s in range(args.symbols):
        path = data / f"T{s:02d}_USDT-1m.csv"
        pipeline.zigzag_csv(path, pipeline.BASE_TS, args.candles, phase=s)
        files.append(str(path))

    kinds: Counter[str] = Counter()

    def count(execute, sql, params, many, context):
        kinds[" ".join(sql.split()[:5])[:80]] += 1
        return execute(sql, params, many, context)

    def commits() -> int:
        """The database's committed transactions so far, less the reading itself."""
        with connection.cursor() as cursor:
            if connection.pg_version >= 150000:  # this session's figures are flushed when its transaction ends
                cursor.execute("SELECT pg_stat_force_next_flush()")
            else:
                time.sleep(1.1)  # flushed at most every second
            cursor.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
            return cursor.fetchone()[0] - (connection.pg_version >= 150000)

    before = commits()
    cpu = time.process_time()
    with connection.execute_wrapper(count):
        call_command("run_feed", "--source", "replay", "--lockstep", "--no-progress", "--data", *files)
    cpu = time.process_time() - cpu
    transactions = commits() - before - 1  # less the first reading's own
    orders = dict(Order.objects.values_list("status").annotate(n=Count("id")).order_by("status"))
    candles = args.symbols * args.candles
    print(f"{root}: {candles} candles, orders {orders}")
    print(f"  statements {sum(kinds.values()):,}; transactions {transactions:,}; CPU {cpu:.2f} s (this process)")
    for text, n in kinds.most_common(args.top):
        print(f"  {n:6d}  {text}")


if __name__ == "__main__":
    main()
