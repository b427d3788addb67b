"""A worker SIGKILLed in the middle of an order: the task is redelivered and the order fills exactly once.

Paper: the order is committed PENDING by its decision and filled by its symbol's next candle in one transaction, so
a worker killed inside the fill leaves it PENDING, and the redelivered candle fills it once. Live: the order is
committed PENDING before it is sent; a worker killed between that commit and the send
leaves it PENDING, and the redelivered task sends it once (the fake MEXC counts what it received). A worker killed
after the exchange filled the order and before the fill was booked leaves it PENDING too: the redelivered task
finds it on the exchange by its client order id and books it, and the book then equals the exchange."""

import contextlib
import os
import signal
from decimal import Decimal

import pytest
from django.core.management import call_command

from execution.models import Order, Portfolio, Position, Trade
from risk.live_order_service import live_executor
from tests.support import processes, series
from tests.support.fake_mexc_trading import FakeMexcTrading
from tests.support.processes import wait_until
from trading.models import Signal

pytestmark = [pytest.mark.workers, pytest.mark.django_db(transaction=True)]
KEY, SECRET = "test-crash-key-0123", "test-crash-secret-4567"
PAUSE_HOOKS = str(processes.ROOT / "tests" / "support" / "pause_hooks")  # the worker's sitecustomize: the pauses


@contextlib.contextmanager
def _killed_at_the_pause(
    env: dict, tmp_path, before_kill, pause: str = "CDB_TEST_PAUSE_BEFORE_SEND", *, next_candle: bool = False
):
    """Start a worker that pauses at its first order (``pause``: before sending or filling, or
    CDB_TEST_PAUSE_BEFORE_BOOKING), publish the crafted series (and, with ``next_candle``, the candle after it, whose
    open a paper order fills at), run ``before_kill`` while it is paused, SIGKILL its pool process (which holds the
    unacknowledged task), and yield the order the redelivered task fills."""
    from tests.support.services import flush_broker

    flush_broker()
    pause_file = tmp_path / "paused.pid"
    hooks = {
        pause: f"{pause_file}:60",
        "PYTHONPATH": os.pathsep.join(filter(None, [PAUSE_HOOKS, env.get("PYTHONPATH")])),
    }
    worker = processes.start_worker("crashy", {**env, **hooks}, tmp_path)
    try:
        events = series.events("ETH_USDT", [p * 20 for p in series.crossing_prices()])
        if next_candle:
            after = series.events("ETH_USDT", [2200.0], base_ts=events[-1]["timestamp"] + series.STEP_MS)
            events += after
        series.publish_all(events)
        pid = int(
            wait_until(
                lambda: pause_file.exists() and pause_file.read_text(),
                timeout=60,
                message="the executor to pause before sending",
            )
        )
        before_kill()
        os.kill(pid, signal.SIGKILL)
        order = wait_until(
            lambda: Order.objects.filter(status="FILLED").first(),
            timeout=60,
            message="the redelivered task to fill the order",
        )
        assert "WorkerLostError" in worker.output() or "SIGKILL" in worker.output()
        yield order
    finally:
        worker.stop()


def test_a_paper_order_killed_inside_its_fill_is_filled_once_on_redelivery(service_env, tmp_path, sma_cross):
    def decided_not_filled():
        assert Signal.objects.count() == 1 and Order.objects.get().status == "PENDING"  # the decision committed
        assert not Trade.objects.exists() and not Position.objects.exists()  # the fill is one transaction

    with _killed_at_the_pause(service_env, tmp_path, decided_not_filled, next_candle=True) as order:
        assert Signal.objects.count() == 1 and Order.objects.count() == 1 and Trade.objects.count() == 1
        assert Position.objects.get(symbol="ETH_USDT").quantity == order.quantity


def test_a_live_order_killed_between_pending_and_send_is_sent_once_on_redelivery(service_env, tmp_path, sma_cross):
    with FakeMexcTrading(api_key=KEY, api_secret=SECRET, prices={"ETHUSDT": "2200"}) as exchange:
        # Sent late (after the redelivery), the entry has its slippage checked again: the market is where it was.
        env = {
            **service_env,
            "LIVE_TRADING": "true",
            "MEXC_API_KEY": KEY,
            "MEXC_API_SECRET": SECRET,
            "MEXC_REST_URL": exchange.url,
        }

        def stored_pending_and_not_sent():
            assert Order.objects.get().status == "PENDING"  # stored before sending
            assert exchange.placed_orders() == []

        with _killed_at_the_pause(env, tmp_path, stored_pending_and_not_sent) as order:
            assert Order.objects.count() == 1 and Trade.objects.count() == 1
            assert len(exchange.orders_for(order.client_order_id)) == 1 and len(exchange.placed_orders()) == 1


def test_a_live_order_killed_after_the_exchange_filled_it_is_booked_once_and_the_book_equals_the_exchange(
    service_env, tmp_path, sma_cross, settings
):
    start = {"USDT": Decimal("10000")}
    with FakeMexcTrading(
        api_key=KEY, api_secret=SECRET, balances=dict(start), prices={"ETHUSDT": "2200"}, fee_in="received"
    ) as exchange:
        env = {
            **service_env,
            "LIVE_TRADING": "true",
            "MEXC_API_KEY": KEY,
            "MEXC_API_SECRET": SECRET,
            "MEXC_REST_URL": exchange.url,
            "INITIAL_CAPITAL": "10000",
        }

        def filled_on_the_exchange_not_booked():
            assert Order.objects.get().status == "PENDING"
            assert len(exchange.placed_orders()) == 1 and exchange.placed_orders()[0]["status"] == "FILLED"
            assert not Position.objects.exists() and not Trade.objects.exists()

        with _killed_at_the_pause(
            env, tmp_path, filled_on_the_exchange_not_booked, pause="CDB_TEST_PAUSE_BEFORE_BOOKING"
        ) as order:
            assert Order.objects.count() == 1 and Trade.objects.count() == 1
            assert len(exchange.orders_for(order.client_order_id)) == 1 and len(exchange.placed_orders()) == 1
            # The reconciliation after the restart: nothing left PENDING, and the book is the exchange's.
            settings.LIVE_TRADING, settings.INITIAL_CAPITAL = True, "10000"
            settings.MEXC_API_KEY, settings.MEXC_API_SECRET, settings.MEXC_REST_URL = KEY, SECRET, exchange.url
            live_executor.cache_clear()
            try:
                call_command("reconcile_orders", "--older-than", "0", "--balances")
            finally:
                live_executor.cache_clear()
            held = Position.objects.get(symbol="ETH_USDT").quantity
            assert held == exchange.balances["ETH"] == order.filled_quantity * (1 - exchange.taker_fee)
            assert Portfolio.load().cash == exchange.balances["USDT"]
