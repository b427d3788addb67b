"""Drill: Redis stops for 10 s in the middle of a replay through two real workers.

A private ``redis-server`` (free port, no persistence: it comes back EMPTY, the worst case) is the broker, the
pub/sub and the strategy-state cache of two real Celery workers and of ``manage.py run_feed --source replay
--lockstep`` running as a child process, all on the PostgreSQL test database. The same candles are replayed
twice: undisturbed, then with Redis killed (SIGKILL) once a third of the signals are in and restarted on the
same port 10 s later. Expected: the feed and the workers back off and recover (the feed exits 0, the workers
are still running), every candle is stored once, nothing is lost (every signal, risk decision, order and trade
of the undisturbed run, the same cash and positions) and nothing is executed twice (no duplicate
client_order_id)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.support import drills, processes

pytestmark = [pytest.mark.workers, pytest.mark.django_db(transaction=True)]

ROWS = 120
SYMBOL = "REDIS_USDT"
OUTAGE_SECONDS = 10
DRILL_ENV = {**drills.DRILL_ENV, "PENDING_ORDER_TIMEOUT_SEC": "5"}


class PrivateRedis:
    """A redis-server of our own on a free port, without persistence; never the shared one."""

    def __init__(self, log_dir: Path) -> None:
        self.port = processes.free_port()
        self.log_dir = log_dir
        self.popen: subprocess.Popen | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.starts += 1
        log = (self.log_dir / f"redis-{self.port}-{self.starts}.log").open("w")
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += ["--daemonize", "no"]
        self.popen = processes.start(args, stdout=log, stderr=subprocess.STDOUT)
        processes.wait_until(self.ping, timeout=10, interval=0.05, message=f"redis-server on {self.port}")

    def ping(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_connect_timeout=0.2).ping())
        except redis.RedisError:
            return False

    def kill(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(10)

    def idle(self) -> bool:
        """No task queued, none taken but unacknowledged, and every task sent through the bus ended (each counts
        itself down in ``bus.IN_FLIGHT_KEY`` as it ends, after its commits): what ``bus.wait_until_idle`` waits for."""
        import redis

        from ground import bus

        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        in_flight = int(client.get(bus.IN_FLIGHT_KEY) or 0)
        return not client.llen("celery") and not client.hlen("unacked") and in_flight <= 0


def snapshot() -> dict:
    from execution.models import Order, Portfolio, Position, Trade
    from marketdata.models import Candle
    from risk.models import RiskEvent, TradingState
    from trading.models import Signal

    return {
        "candles": sorted(Candle.objects.filter(symbol=SYMBOL).values_list("timestamp", flat=True)),
        "signals": sorted(Signal.objects.values_list("signal_id", "side", "status")),
        "orders": sorted(
            Order.objects.values_list("client_order_id", "side", "status", "quantity", "filled_quantity", "price")
        ),
        "trades": sorted(Trade.objects.values_list("trade_id", "quantity", "status")),
        "positions": sorted(Position.objects.values_list("symbol", "quantity", "avg_entry_price")),
        "cash": Portfolio.load().cash,
        "risk": sorted(
            RiskEvent.objects.exclude(decision="STATE_CHANGE").values_list("decision", "layer", "signal_id")
        ),
        "state": TradingState.load().state,
    }


def signal_count() -> int:
    from trading.models import Signal

    return Signal.objects.count()


def run(env: dict, tmp_path: Path, name: str, outage_after_signals: int | None = None) -> dict:
    tmp_path.mkdir(parents=True, exist_ok=True)
    redis_server = PrivateRedis(tmp_path)
    redis_server.start()
    env = {**env, "REDIS_URL": redis_server.url}
    workers: list[processes.Process] = []
    outage: dict = {}
    try:
        workers = [processes.start_worker(f"{name}{i}", env, tmp_path) for i in (1, 2)]
        feed_log = (tmp_path / "feed.log").open("w")
        csv = drills.zigzag_csv(tmp_path / f"{SYMBOL}-1m.csv", ROWS)
        args = [sys.executable, "manage.py", "run_feed", "--source", "replay", "--data", str(csv), "--lockstep"]
        feed = processes.start(
            args + ["--no-progress"], cwd=processes.ROOT, env=env, stdout=feed_log, stderr=subprocess.STDOUT
        )

        def storm() -> None:
            processes.wait_until(
                lambda: signal_count() >= outage_after_signals or feed.poll() is not None,
                timeout=120,
                interval=0.02,
                message="the replay to get going",
            )
            if feed.poll() is not None:
                return
            outage["signals_before"] = signal_count()
            redis_server.kill()
            outage["down"] = time.monotonic()
            time.sleep(OUTAGE_SECONDS)
            redis_server.start()
            outage["up"] = time.monotonic()

        thread = threading.Thread(target=storm, daemon=True)
        if outage_after_signals is not None:
            thread.start()
        try:
            returncode = feed.wait(timeout=150)
        except subprocess.TimeoutExpired:
            feed.kill()
            pytest.fail(f"the replay did not finish:\n{(tmp_path / 'feed.log').read_text()}")
        if thread.is_alive():
            thread.join(30)
        feed_output = (tmp_path / "feed.log").read_text(errors="replace")
        assert returncode == 0, f"run_feed exited {returncode}:\n{feed_output}"
        for worker in workers:
            assert worker.popen.poll() is None, f"{worker.name} died:\n{worker.output()}"
        processes.wait_until(redis_server.idle, timeout=60, message="the pipeline to drain")
        result = snapshot()
        result["outage"] = outage
        result["feed"] = feed_output
        return result
    finally:
        for worker in workers:
            worker.stop()
        redis_server.kill()


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_redis_down_for_ten_seconds_during_a_replay_loses_nothing_and_duplicates_nothing(service_env, tmp_path):
    from django.core.management import call_command

    env = {**service_env, **DRILL_ENV}
    started = time.monotonic()
    calm = run(env, tmp_path / "calm", "calm")
    calm_seconds = time.monotonic() - started
    assert calm["orders"], "the drill needs orders to be meaningful"
    assert len(calm["candles"]) == ROWS

    call_command("flush", interactive=False, verbosity=0)
    started = time.monotonic()
    stormy = run(env, tmp_path / "storm", "storm", outage_after_signals=max(1, len(calm["signals"]) // 3))
    storm_seconds = time.monotonic() - started
    outage = stormy.pop("outage")
    calm.pop("outage")
    assert "down" in outage and "up" in outage, "the outage did not happen during the replay"
    assert outage["signals_before"] < len(calm["signals"]), "the outage came after the last signal"
    assert f"published:       {ROWS}" in stormy.pop("feed") and f"published:       {ROWS}" in calm.pop("feed")

    assert stormy["candles"] == calm["candles"]  # every candle stored, once (unique key)
    client_ids = [order[0] for order in stormy["orders"]]
    assert len(client_ids) == len(set(client_ids))  # nothing executed twice
    for key in ("signals", "risk", "orders", "trades", "positions", "cash", "state"):
        assert stormy[key] == calm[key], f"{key} differ from the undisturbed run"
    print(
        f"\nRedis drill: down {OUTAGE_SECONDS}s after {outage['signals_before']} of {len(calm['signals'])} signals; "
        f"{ROWS} candles, {len(calm['orders'])} orders, {len(calm['trades'])} trades — equal to the undisturbed "
        f"run; calm {calm_seconds:.1f}s, with the outage {storm_seconds:.1f}s"
    )
