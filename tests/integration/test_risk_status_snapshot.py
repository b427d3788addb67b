"""``risk_status`` reads the account at one moment (issue 22, review): a fill committed by another connection while
the command reads (after its portfolio row, before its positions) is either wholly in what it prints or not at all;
the equity never counts the bought coins and the cash they cost both."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection, connections

from execution.models import Portfolio, Position
from marketdata.ingest import market_data_event, persist_market_data
from risk.models import RiskParameters, TradingState

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

TS = 1_730_443_200_000  # on the 1m grid
PRICE = Decimal("100000")
QUANTITY = Decimal("0.01")


def _fill_elsewhere() -> None:
    """A fill on another connection, committed: 1,000 of cash become 0.01 BTC at 100,000."""

    def fill():
        try:
            portfolio = Portfolio.load()
            portfolio.cash -= PRICE * QUANTITY
            portfolio.save(update_fields=["cash", "updated_at"])
            Position.objects.create(symbol="BTC_USDT", quantity=QUANTITY, avg_entry_price=PRICE)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(fill).result()


def test_a_fill_committed_while_risk_status_reads_is_not_half_in_it():
    persist_market_data(market_data_event("BTC_USDT", "1m", TS, PRICE, PRICE, PRICE, PRICE, 1))
    start = Portfolio.load().cash
    TradingState.load(), RiskParameters.load()  # created before: the command's reads then write nothing
    filled = []

    def fill_after_the_portfolio_row(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if not filled and "execution_portfolio" in sql:
            filled.append(sql)
            _fill_elsewhere()
        return result

    out = StringIO()
    with connection.execute_wrapper(fill_after_the_portfolio_row):
        call_command("risk_status", "--json", stdout=out)
    assert filled  # the fill came between the command's reads
    status = json.loads(out.getvalue())
    equity, cash, exposure = (Decimal(status[key]) for key in ("equity", "cash", "exposure"))
    held = sum((Decimal(p["value"]) for p in status["open_positions"]), Decimal(0))
    assert equity == cash + exposure == cash + held, status
    assert equity == start, status  # before the fill or after it: the same equity, never the cost counted twice
    # and after it, read again: the fill, whole
    again = StringIO()
    call_command("risk_status", "--json", stdout=again)
    after = json.loads(again.getvalue())
    assert (Decimal(after["cash"]), Decimal(after["exposure"])) == (start - PRICE * QUANTITY, PRICE * QUANTITY)
    assert Decimal(after["equity"]) == start


def test_the_one_row_tables_another_request_creates_meanwhile_do_not_fail_a_snapshot():
    """On a new database, concurrent /api/status/ requests each read in a REPEATABLE READ snapshot. A row another
    request created after the snapshot began is invisible in it: created inside it, ``get_or_create`` meets the
    unique key, cannot read the row back, and the request failed with IntegrityError (500). The one-row tables are
    there before the snapshot begins."""
    from risk.status import one_snapshot

    TradingState.objects.all().delete()
    RiskParameters.objects.all().delete()
    Portfolio.objects.all().delete()

    def create_elsewhere():
        try:
            TradingState.load()
            RiskParameters.load()
            Portfolio.load()
        finally:
            connections.close_all()

    with one_snapshot():
        Position.objects.exists()  # the snapshot is taken at the first read
        with ThreadPoolExecutor(1) as pool:
            pool.submit(create_elsewhere).result()
        assert TradingState.load().pk == 1 and RiskParameters.load().pk == 1 and Portfolio.load().pk == 1
