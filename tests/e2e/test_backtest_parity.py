"""Backtest and live agree: the same candles through `run_feed --source replay` on real Celery workers (Redis,
PostgreSQL) and through `backtest` give the same orders in the same order and the same final equity."""

import json
import sys
from decimal import Decimal as D

import pytest

from execution.accounting import money
from execution.models import Order, Portfolio, Position
from marketdata.models import Candle
from tests.support import processes
from tests.support.paths import CANDLES
from tests.support.processes import ROOT

pytestmark = [pytest.mark.workers, pytest.mark.django_db(transaction=True), pytest.mark.shared_data]
ROWS = 500  # per file: entries, exits, stop-losses, failures and partial fills with the momentum strategy


def _slice(tmp_path, name: str) -> str:
    lines = (CANDLES / name).read_text().splitlines()[: ROWS + 1]
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_replay_through_workers_equals_the_backtest(service_env, tmp_path):
    from tests.support.services import flush_broker

    files = [_slice(tmp_path, "ETH_BTC-5m.csv"), _slice(tmp_path, "LTC_BTC-5m.csv")]
    env = {**service_env, "STRATEGY": "momentum", "PAPER_FAILURE_RATE": "0.05"}

    report_path = tmp_path / "backtest.json"
    backtest = processes.run(
        [
            sys.executable,
            "manage.py",
            "backtest",
            "--data",
            *files,
            "--strategy",
            "momentum",
            "--failure-rate",
            "0.05",
            "--json",
            str(report_path),
            "--no-progress",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert backtest.returncode == 0, backtest.stderr
    report = json.loads(report_path.read_text())

    flush_broker()
    workers = [processes.start_worker(f"parity{i}", env, tmp_path) for i in (1, 2)]
    try:
        replay = processes.run(
            [
                sys.executable,
                "manage.py",
                "run_feed",
                "--source",
                "replay",
                "--data",
                *files,
                "--speed",
                "max",
                "--lockstep",
                "--no-progress",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert replay.returncode == 0, replay.stderr + replay.stdout
    finally:
        for worker in workers:
            worker.stop()

    assert Candle.objects.count() == report["candles"] == 2 * ROWS
    live = [
        (o.client_order_id, o.symbol, o.side, o.purpose, o.status, o.quantity, o.filled_quantity, o.price, o.event_time)
        for o in Order.objects.order_by("id")
    ]
    simulated = [
        (
            o["client_order_id"],
            o["symbol"],
            o["side"],
            o["purpose"],
            o["status"],
            D(o["quantity"]),
            D(o["filled_quantity"]),
            D(o["price"]) if o["price"] is not None else None,
            o["timestamp"],
        )
        for o in report["orders"]
    ]
    assert len(simulated) >= 20, "the slice must exercise the pipeline"
    assert {o[3] for o in simulated} >= {"entry", "exit", "stop_loss"} and {o[4] for o in simulated} >= {"FAILED"}
    assert live == simulated

    portfolio = Portfolio.load()
    marks = {
        s: Candle.objects.filter(symbol=s).order_by("-timestamp").values_list("close", flat=True).first()
        for s in ("ETH_BTC", "LTC_BTC")
    }
    positions = Position.objects.filter(quantity__gt=0)
    equity = portfolio.cash + sum(money(p.quantity * marks[p.symbol]) for p in positions)  # valued as the Book does
    assert equity == D(report["final_equity"])
    assert portfolio.fees_paid == D(report["fees"]) and portfolio.realized_pnl == D(report["realized_pnl"])
