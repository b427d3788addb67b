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

from execution.models import Order, Portfolio, Position
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


def _reads_of(queries: CaptureQueriesContext, table: str) -> int:
    return sum(1 for query in queries.captured_queries if query["sql"].startswith("SELECT") and table in query["sql"])


def test_a_decision_takes_the_account_rows_its_candle_s_watch_read_while_their_version_holds(sma_cross):
    """The crossing candle's watch has the account's rows (read after its version); the decision on that candle's
    signal, under the lock, reads the version with its history and takes those rows: no read of the positions or
    the portfolio again. The BUY is 10 % of the equity: 1000 / 110 (the crossing's close)."""
    events = series.events()
    with clock.use_clock(clock.ManualClock(series.BASE_TS)):
        series.publish_all(events[:-1])
        with CaptureQueriesContext(connection) as queries:
            series.publish_all(events[-1:])
    entry = Order.objects.get(purpose=Order.Purpose.ENTRY)
    assert entry.quantity == Decimal("9.09090909")
    assert _reads_of(queries, '"execution_position"') == 0
    assert _reads_of(queries, '"execution_portfolio"') == 0


def test_a_decision_reads_the_account_again_when_it_changed_after_the_watch(sma_cross):
    """The same crossing, with half the cash taken out between the candle's watch and its decision (a bumped
    version): the decision reads the rows again and judges the account at 5,000 (a 50 % daily drawdown: halted).
    On the watch's rows it would have bought."""
    from risk.decision_service import process_market_watch
    from trading.signal_service import process_market_data

    events = series.events()
    with clock.use_clock(clock.ManualClock(series.BASE_TS)):
        series.publish_all(events[:-1])
        last = events[-1]
        persist_market_data(last)
        watch = process_market_watch()
        watch(last)
        known = watch.known()
        assert known is not None
        Portfolio.objects.filter(pk=1).update(cash=Decimal("5000"))
        with CaptureQueriesContext(connection) as queries:
            process_market_data(last, known)
    assert not Order.objects.exists()
    rejected = RiskEvent.objects.get(decision="REJECT")
    assert rejected.layer == "drawdown" and "equity 5,000.00 USDT" in rejected.reason, rejected.reason
    assert _reads_of(queries, '"execution_position"') == 1


def test_a_fill_step_reads_the_pending_orders_once_with_their_fill_candles(sma_cross):
    """Two symbols cross on the same candle: two BUYs wait. The next candle of the first fills its BUY in one locked
    step that reads the PENDING orders once, each with its fill candle (no read of the candle on its own); the
    account it hands the watch (``MarketWatch.known``) counts the other symbol's BUY, still waiting, as the stored
    rows do."""
    from risk.account_view import account_rows
    from risk.decision_service import process_market_watch

    first, second = series.events("AAA_USDT"), series.events("BBB_USDT")
    with clock.use_clock(clock.ManualClock(series.BASE_TS)):
        series.publish_all([event for pair in zip(first, second, strict=True) for event in pair])
        assert Order.objects.filter(status="PENDING").count() == 2
        with CaptureQueriesContext(connection) as queries:
            series.publish_all([series.next_event(first)])
    assert list(Order.objects.order_by("symbol").values_list("symbol", "status")) == [
        ("AAA_USDT", "FILLED"),
        ("BBB_USDT", "PENDING"),
    ]
    selects = [query["sql"] for query in queries.captured_queries if query["sql"].startswith("SELECT")]
    assert sum(1 for sql in selects if sql.startswith('SELECT "execution_order"."id"')) == 1, selects
    assert not any(sql.startswith('SELECT "marketdata_candle"."open"') for sql in selects), selects
    known = process_market_watch().known()
    stored = account_rows(lock=False, with_lots=True)
    assert known is not None
    kept = known.rows
    assert (kept.quantities, kept.cash, kept.receivable, kept.entering, kept.entering_cost, kept.waiting) == (
        stored.quantities,
        stored.cash,
        stored.receivable,
        stored.entering,
        stored.entering_cost,
        stored.waiting,
    )
    assert kept.waiting == {"BBB_USDT"} and set(kept.entering) == {"BBB_USDT"}
    assert kept.lots == stored.lots and set(kept.lots) == {"AAA_USDT"}
