"""The embedded server's simulated feed keeps going when a step fails (it used to stop for good)."""

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.db import OperationalError, connections

from marketdata.feeds import sim_runner
from marketdata.models import Candle

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

    async def run_for(seconds: float) -> None:
        task = asyncio.ensure_future(sim_runner.run_async(market, backfill=2, tick_seconds=0.02))
        await asyncio.sleep(seconds)
        assert not task.done(), "the feed stopped"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await sync_to_async(connections.close_all)()  # the feed's thread's connection (it would outlive the test)

    asyncio.run(run_for(1.0))
    assert "a step failed (1 in a row)" in caplog.text
    stored = Candle.objects.filter(symbol="SIMF_USDT").count()
    assert stored >= 5 and calls["n"] == stored + 1  # every candle but the failed one is stored
