"""The live shell writes a decision's effects in a small fixed number of statements (issue 19): the daily drawdown's
halt and close-out of one position and of three positions take the same number of SQL statements, their risk
events, alerts and orders each written with one INSERT (bulk_create), in the decision's transaction, on PostgreSQL.
And what the decision wrote is what the desk said, once: nothing decided twice when the candle comes again."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from execution.models import Order, Position
from marketdata import clock
from marketdata.ingest import market_data_event, persist_market_data
from risk.decision_service import watch_market
from risk.models import Alert, RiskEvent, RiskParameters, TradingState
from tests.support import series

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


def _open_positions(symbols: list[str], base_ts: int) -> int:
    """Each symbol's crossing and the candle after it, interleaved by time: a filled BUY per symbol (10 % of the
    equity each). Returns the next candle's open time."""
    streams = [series.filled_events(symbol, base_ts=base_ts) for symbol in symbols]
    with clock.use_clock(clock.ManualClock(base_ts)):
        series.publish_all([event for row in zip(*streams, strict=True) for event in row])
    assert sorted(Position.objects.filter(quantity__gt=0).values_list("symbol", flat=True)) == sorted(symbols)
    return streams[0][-1]["timestamp"] + series.STEP_MS


def _drawdown_close_out(symbols: list[str], base_ts: int) -> int:
    """The statements of the watch on the first symbol's crash candle (−40 %: 4 % of the equity, above a 1 %
    MAX_DAILY_DRAWDOWN_PCT), which halts and closes every position."""
    crash_ts = _open_positions(symbols, base_ts)
    parameters = RiskParameters.load()
    parameters.max_daily_drawdown_pct = Decimal("0.01")
    parameters.save()
    crash = market_data_event(symbols[0], "1m", crash_ts, 66, 66.1, 65.9, 66, 100)
    persist_market_data(crash)
    with clock.use_clock(clock.ManualClock(crash_ts)), CaptureQueriesContext(connection) as queries:
        watch_market(crash)
    assert TradingState.load().state == "HALTED"
    closes = Order.objects.filter(purpose=Order.Purpose.DRAWDOWN_CLOSE, status="PENDING")
    assert sorted(closes.values_list("symbol", flat=True)) == sorted(symbols)  # one close per position
    approved = RiskEvent.objects.filter(layer="drawdown_close", decision="APPROVE")
    assert approved.count() == len(symbols)
    assert Alert.objects.filter(code="TRADING_STATE", message__startswith="Trading HALTED").count() == 1

    with clock.use_clock(clock.ManualClock(crash_ts)):
        watch_market(crash)  # the same candle again: the closes are made already
    assert Order.objects.filter(purpose=Order.Purpose.DRAWDOWN_CLOSE).count() == len(symbols)
    return len(queries)


def test_a_close_out_of_three_positions_takes_the_statements_of_one(sma_cross):
    one = _drawdown_close_out(["AAA_USDT"], series.BASE_TS)
    call_command("flush", "--noinput")  # a new account
    three = _drawdown_close_out(["BBB_USDT", "CCC_USDT", "DDD_USDT"], series.BASE_TS + 86_400_000)
    assert three == one, (one, three)
