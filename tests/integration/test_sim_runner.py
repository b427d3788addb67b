"""The embedded server's simulated feed keeps going when a step fails (it used to stop for good)."""

import asyncio
import io

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.db import OperationalError, connections

from ground.timeutil import ms_to_datetime
from marketdata.feeds import sim_runner
from marketdata.models import Candle
from risk.models import TradingState

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_failed_step_is_logged_and_the_feed_goes_on(monkeypatch, caplog):
    real = sim_runner.publish_candle
    calls = {"n": 0}

    def flaky(symbol, interval, candle):
        calls["n"] += 1
        if calls["n"] == 3:  # the first live step after the backfill of two
            raise OperationalError("database is locked")
        return real(symbol, interval, candle)

    monkeypatch.setattr(sim_runner, "publish_candle", flaky)
    market = sim_runner.build_market(["SIMF_USDT"], seed=7, interval="1m", backfill=2).market
    started: list[int] = []

    async def run_until_past_the_failure(deadline_seconds: float) -> None:
        running = sim_runner.run_async(market, backfill=2, tick_seconds=0.02, on_start=started.append)
        task = asyncio.ensure_future(running)
        deadline = asyncio.get_running_loop().time() + deadline_seconds
        while calls["n"] < 6 and not task.done() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)  # (a loaded machine takes longer to get three steps past the failure)
        assert not task.done(), "the feed stopped"
        assert calls["n"] >= 6, f"{calls['n']} candles tried in {deadline_seconds} s"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await sync_to_async(connections.close_all)()  # the feed's thread's connection (it would outlive the test)

    asyncio.run(run_until_past_the_failure(60.0))
    assert "a step failed (1 in a row)" in caplog.text
    stored = Candle.objects.filter(symbol="SIMF_USDT").count()
    assert stored >= 5 and calls["n"] == stored + 1  # every candle but the failed one is stored
    first = Candle.objects.filter(symbol="SIMF_USDT").order_by("timestamp").values_list("timestamp", flat=True)[0]
    assert started == [first - 60_000]  # told its start once: the clock's time before its first candle


def test_run_feed_sim_starts_the_trading_state_no_later_than_its_market():
    """A fresh database's trading state is stamped by the wall clock; the simulated market starts in the past, and
    the command moves the state's time back to the market's start (``risk.state.no_state_from_the_future``)."""
    TradingState.load()  # stamped now, by the wall clock
    call_command(
        "run_feed", "--source", "sim", "--symbols", "SIMS_USDT", "--backfill", "3", "--steps", "0", stdout=io.StringIO()
    )
    first = Candle.objects.filter(symbol="SIMS_USDT").order_by("timestamp").values_list("timestamp", flat=True)[0]
    assert TradingState.load().since == ms_to_datetime(first - 60_000)
