"""Drill: SIGKILL a worker's task process 5 times during a replay through two real workers.

The same candles are replayed twice in lockstep (the next candle is published once the pipeline is idle):
undisturbed, then with the kills. Expected: no candle lost (every one stored and every signal of the
undisturbed run produced), no duplicate order, and the final state (signals, orders, trades, positions,
cash, risk decisions) equal to the undisturbed run."""

from __future__ import annotations

import os
import random
import signal
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


def run(env: dict, tmp_path: Path, name: str, kills: int = 0) -> tuple[dict, list[int]]:
    """Replay the candles in lockstep through two fresh workers; with ``kills``, SIGKILL a pool process (of each
    worker in turn) that many times, spread over the replay: a few milliseconds after a candle is published, while
    its task is running, then the replay goes on once the pool has replaced the process."""
    from ground import bus
    from tests.support.services import flush_broker

    flush_broker()
    tmp_path.mkdir(parents=True, exist_ok=True)
    workers = [processes.start_worker(f"{name}{i}", env, tmp_path) for i in (1, 2)]
    kill_after = {ROWS * (n + 1) // (kills + 1) for n in range(kills)}
    killed: list[int] = []
    published = 0
    chance = random.Random(7)

    def after_event() -> None:
        nonlocal published
        published += 1
        if published in kill_after:
            target = workers[len(killed) % 2]
            pids = processes.wait_until(lambda: children(target.popen.pid), timeout=30, message="a pool child")
            time.sleep(chance.uniform(0.0, 0.012))
            os.kill(pids[0], signal.SIGKILL)
            killed.append(published)
            processes.wait_until(
                lambda: children(target.popen.pid) and pids[0] not in children(target.popen.pid),
                timeout=30,
                message="the pool to replace the killed process",
            )
        bus.wait_until_idle(timeout=120)

    try:
        total = replay(drills.zigzag_csv(tmp_path / f"{SYMBOL}-1m.csv", ROWS), after_event)
        bus.wait_until_idle(timeout=120)
        assert total == ROWS
        return snapshot(), killed
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
    assert kills[-1] < ROWS
    assert stormy["candles"] == ROWS  # 0 lost candles
    client_ids = [order[0] for order in stormy["orders"]]
    assert len(client_ids) == len(set(client_ids))  # 0 duplicate orders (also a unique constraint)
    assert stormy == calm
    print(
        f"\nSIGKILL drill: 5 kills, {ROWS} candles, {len(calm['signals'])} signals, {len(calm['orders'])} orders, "
        f"{len(calm['trades'])} trades — state equal to the undisturbed run"
    )
