"""ground.raw_rows reads the one-row tables as the ORM builds them: same values and types, on PostgreSQL and SQLite
(every other read is an ordinary queryset)."""

from decimal import Decimal as D

import pytest
from django.utils import timezone

from execution.models import Order, Portfolio, Position, Trade
from ground.raw_rows import fetch_singleton, fetch_singleton_with, fetch_singletons
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


def test_a_one_row_table_with_one_more_selected_expression_in_one_statement(django_assert_num_queries):
    pending = ('(SELECT COUNT(*) FROM "execution_order" WHERE "status" = %s)', [Order.Status.PENDING])
    assert fetch_singleton_with(Portfolio, pending) is None
    Portfolio.load()
    _stored_rows()  # two orders, one of them PENDING
    with django_assert_num_queries(1):
        portfolio, count = fetch_singleton_with(Portfolio, pending, for_update=True)
    assert _values(portfolio) == _values(Portfolio.objects.get(pk=1)) and count == 1
    assert not portfolio._state.adding and portfolio._state.db == "default"
    assert _values(fetch_singleton_with(Portfolio, None)[0]) == _values(portfolio)
