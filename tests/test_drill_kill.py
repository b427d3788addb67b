"""Drill: SIGKILL a worker's task process 5 times during a replay through two real workers.

The same candles are replayed twice in lockstep (the next candle is published once the pipeline is idle):
undisturbed, then with the kills. Expected: no candle lost (every one stored and every signal of the
undisturbed run produced), no duplicate order, and the final state (signals, orders, trades, positions,
cash, risk decisions) equal to the undisturbed run."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from tests.support import drills, processes

pytestmark = [pytest.mark.workers, pytest.mark.django_db(transaction=True)]

ROWS = 240
SYMBOL = "KILL_USDT"


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def snapshot() -> dict:
    from execution.models import Order, Portfolio, Position, Trade
    from marketdata.models import Candle
    from risk.models import RiskEvent, TradingState
    from trading.models import Signal

    return {
        "candles": Candle.objects.filter(symbol=SYMBOL).count(),
        "signals": sorted(Signal.objects.values_list("signal_id", "side")),
        "orders": sorted(
            Order.objects.values_list("client_order_id", "side", "status", "quantity", "filled_quantity", "price")
        ),
        "trades": sorted(Trade.objects.values_list("trade_id", "quantity")),
        "positions": sorted(Position.objects.values_list("symbol", "quantity", "avg_entry_price")),
        "cash": Portfolio.load().cash,
        "risk": sorted(RiskEvent.objects.exclude(decision="STATE_CHANGE").values_list("decision", "layer", "symbol")),
        "state": TradingState.load().state,
    }


def replay(path: Path, after_event) -> int:
    from marketdata.feeds.replay import Replay, resolve_sources

    summary = Replay(resolve_sources([str(path)], None, None), speed=None, after_event=after_event).run()
    return summary.published


def run(env: dict, tmp_path: Path, name: str, kills: int = 0) -> tuple[dict, list[float]]:
    from cdb_project import bus
    from tests.support.services import flush_broker

    flush_broker()
    tmp_path.mkdir(parents=True, exist_ok=True)
    workers = [processes.start_worker(f"{name}{i}", env, tmp_path) for i in (1, 2)]
    killed: list[float] = []
    done = threading.Event()

    def killer():
        time.sleep(0.5)
        for n in range(kills):
            target = workers[n % 2]
            pids = processes.wait_until(lambda t=target: children(t.popen.pid), timeout=30, message="a pool child")
            os.kill(pids[0], signal.SIGKILL)
            killed.append(time.monotonic())
            processes.wait_until(
                lambda t=target, old=pids[0]: children(t.popen.pid) and old not in children(t.popen.pid),
                timeout=30,
                message="the pool to replace the killed process",
            )
            if done.is_set():
                return
            time.sleep(1.0)

    thread = threading.Thread(target=killer, daemon=True)
    try:
        thread.start()
        published = replay(
            drills.zigzag_csv(tmp_path / f"{SYMBOL}-1m.csv", ROWS), lambda: bus.wait_until_idle(timeout=120)
        )
        finished = time.monotonic()
        done.set()
        thread.join(60)
        bus.wait_until_idle(timeout=120)
        assert published == ROWS
        killed_during = [t for t in killed if t <= finished]
        return snapshot(), killed_during
    finally:
        for worker in workers:
            worker.stop()


def test_five_sigkills_during_a_replay_lose_nothing_and_duplicate_nothing(service_env, tmp_path):
    from django.core.management import call_command

    from trading.signal_service import clear_state_cache

    env = {**service_env, **drills.DRILL_ENV}
    calm, _ = run(env, tmp_path / "calm", "calm")
    assert calm["orders"], "the drill needs orders to be meaningful"

    call_command("flush", interactive=False, verbosity=0)
    clear_state_cache()
    stormy, kills = run(env, tmp_path / "storm", "storm", kills=5)

    assert len(kills) == 5, f"only {len(kills)} kills landed during the replay"
    assert stormy["candles"] == ROWS  # 0 lost candles
    client_ids = [order[0] for order in stormy["orders"]]
    assert len(client_ids) == len(set(client_ids))  # 0 duplicate orders (also a unique constraint)
    assert stormy == calm
    print(
        f"\nSIGKILL drill: 5 kills, {ROWS} candles, {len(calm['signals'])} signals, {len(calm['orders'])} orders, "
        f"{len(calm['trades'])} trades — state equal to the undisturbed run"
    )
