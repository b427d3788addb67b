"""ground.raw_rows builds the instances the ORM builds: same values and types, on PostgreSQL and SQLite."""

from decimal import Decimal as D

import pytest
from django.utils import timezone

from execution.models import Order, Portfolio, Position, Trade
from ground.raw_rows import fetch_rows, fetch_rows_with, fetch_singleton, fetch_singletons, fetch_values
from risk.models import RiskParameters, TradingState
from trading.models import Signal

pytestmark = pytest.mark.django_db


def _values(instance) -> dict:
    return {
        f.attname: (type(getattr(instance, f.attname)), getattr(instance, f.attname))
        for f in instance._meta.concrete_fields
    }


def _stored_rows() -> None:
    order = Order.objects.create(
        client_order_id="cdbraw1",
        signal_id="S:1m:x:1",
        symbol="RAW_USDT",
        side="BUY",
        quantity=D("1.123456789012"),
        requested_price=D("35250.5"),
        price=D("35260.123456789"),
        event_time=1_735_689_600_000,
        submitted_at=timezone.now(),
        stop_loss=D("34545.49"),
        risk_score=D("0.82"),
        risk_checks=["drawdown", "exposure"],
    )
    Order.objects.create(
        client_order_id="cdbraw2", symbol="RAW_USDT", side="SELL", quantity=D("0.5"), requested_price=D("1E-12"),
        event_time=1_735_689_660_000, status=Order.Status.FILLED,
    )  # fmt: skip
    Trade.objects.create(
        trade_id="T-raw", order=order, symbol="RAW_USDT", quantity=D("1.1"), entry_price=D("35260.1"),
        entry_time=timezone.now(), entry_fees=D("0.035"),
    )  # fmt: skip
    Position.objects.create(
        symbol="RAW_USDT", quantity=D("1.1"), cost_basis=D("38786.11"), avg_entry_price=D("35260.1")
    )
    Signal.objects.create(
        signal_id="S:1m:x:1", symbol="RAW_USDT", interval="1m", side="BUY", confidence=D("0.82"), reason="r",
        strategy="x", price=D("35250.5"), timestamp=1_735_689_600_000, components={"ema": 1.5, "rsi": [41, None]},
    )  # fmt: skip


@pytest.mark.parametrize("model", [Order, Trade, Position, Signal])
def test_fetched_rows_equal_the_orm_s(model):
    _stored_rows()
    fetched = fetch_rows(model, "1 = 1", order_by="id")
    expected = list(model.objects.order_by("id"))
    assert fetched and [_values(row) for row in fetched] == [_values(row) for row in expected]
    assert all(not row._state.adding and row._state.db == "default" for row in fetched)


@pytest.mark.parametrize("model", [TradingState, Portfolio, RiskParameters])
def test_one_row_tables_equal_the_orm_s(model):
    assert fetch_singleton(model) is None
    created = model.load()
    assert _values(fetch_singleton(model)) == _values(model.objects.get(pk=1)) == _values(created)


def test_two_one_row_tables_in_one_statement_equal_the_orm_s(django_assert_num_queries):
    assert fetch_singletons(TradingState, RiskParameters) is None
    TradingState.load()
    assert fetch_singletons(TradingState, RiskParameters) is None, "both rows or nothing"
    RiskParameters.load()
    with django_assert_num_queries(1):
        state, parameters = fetch_singletons(TradingState, RiskParameters, lock_first=True)
    assert _values(state) == _values(TradingState.objects.get(pk=1))
    assert _values(parameters) == _values(RiskParameters.load()) and parameters.sources
    assert not state._state.adding and parameters._state.db == "default"


def test_the_state_with_its_parameters_is_created_on_first_use():
    state, parameters = TradingState.load_with_parameters(for_update=True)
    assert (state.pk, state.state) == (1, "ACTIVE")
    assert _values(parameters) == _values(RiskParameters.objects.get(pk=1))


def test_where_parameters_and_order():
    _stored_rows()
    rows = fetch_rows(Order, "symbol = %s AND quantity > %s", ["RAW_USDT", D("0.4")], order_by="event_time DESC")
    assert [row.client_order_id for row in rows] == ["cdbraw2", "cdbraw1"]
    assert fetch_rows(Order, "client_order_id = %s", ["nothing"], for_update=True) == []


def test_rows_with_one_more_selected_expression_and_its_parameters():
    _stored_rows()
    entry = (
        '(SELECT "client_order_id" FROM "execution_order" WHERE "execution_order"."id" = "execution_trade"."order_id"'
        " AND side = %s)"
    )
    [(trade, client_order_id)] = fetch_rows_with(Trade, (entry, ["BUY"]), "symbol = %s", ["RAW_USDT"], for_update=True)
    assert _values(trade) == _values(Trade.objects.get()) and client_order_id == "cdbraw1"
    [(_, nothing)] = fetch_rows_with(Trade, (entry, ["SELL"]), "symbol = %s", ["RAW_USDT"])
    assert nothing is None


def test_fetched_values_equal_values_list():
    from marketdata.ingest import bulk_store
    from marketdata.models import Candle

    bulk_store(
        [
            ("RAW_USDT", "1m", 1_735_689_600_000 + n * 60_000, 1.5 + n, 2.25, 0.1, 35250.123456789, 1e-12)
            for n in range(5)
        ]
    )
    fields = ("timestamp", "high", "low", "close", "volume", "created_at", "interval")
    fetched = fetch_values(
        Candle,
        fields,
        '"symbol" = %s AND "timestamp" <= %s',
        ["RAW_USDT", 1_735_689_780_000],
        order_by='"timestamp" DESC',
        limit=3,
    )
    expected = list(
        Candle.objects.filter(symbol="RAW_USDT", timestamp__lte=1_735_689_780_000)
        .order_by("-timestamp")
        .values_list(*fields)[:3]
    )
    assert len(fetched) == 3
    assert [[(type(v), v) for v in row] for row in fetched] == [[(type(v), v) for v in row] for row in expected]
