"""ground.raw_rows reads the one-row tables as the ORM builds them: same values and types, on PostgreSQL and SQLite;
every other read is a queryset."""

from decimal import Decimal as D

import pytest

from execution.models import Order, Portfolio
from ground.raw_rows import converted, fetch_singleton, fetch_singleton_rows, fetch_singletons
from risk.models import RiskParameters, TradingState

pytestmark = pytest.mark.django_db


def _values(instance) -> dict:
    return {
        f.attname: (type(getattr(instance, f.attname)), getattr(instance, f.attname))
        for f in instance._meta.concrete_fields
    }


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


def test_three_one_row_tables_two_locked_and_selected_expressions_in_one_statement(django_assert_num_queries):
    """A paper fill step's first read (``TradingState.load_for_fills``) and the read after its fills: one-row tables
    with scalar subqueries and their parameters, in one statement."""
    assert fetch_singleton_rows((TradingState, RiskParameters, Portfolio)) is None
    TradingState.load(), RiskParameters.load(), Portfolio.load()
    for n, status in enumerate(["PENDING", "PENDING", "FILLED"]):
        Order.objects.create(
            client_order_id=f"cdbone{n}", symbol="ONE_USDT", side="BUY", quantity=D("1"), requested_price=D("2.5"),
            event_time=1_735_689_600_000 + n, status=status,
        )  # fmt: skip
    count = ('(SELECT COUNT(*) FROM "execution_order" WHERE "status" = %s AND "symbol" = %s)', ["PENDING", "ONE_USDT"])
    latest = ('(SELECT MAX("event_time") FROM "execution_order")', [])
    with django_assert_num_queries(1):
        state, parameters, portfolio, pending, last = fetch_singleton_rows(
            (TradingState, RiskParameters, Portfolio), locked=(TradingState, Portfolio), extra=[count, latest]
        )
    assert _values(state) == _values(TradingState.objects.get(pk=1))
    assert _values(parameters) == _values(RiskParameters.objects.get(pk=1))
    assert _values(portfolio) == _values(Portfolio.objects.get(pk=1))
    assert (int(pending), int(last)) == (2, 1_735_689_600_002)
    assert fetch_singleton_rows((TradingState, RiskParameters, Portfolio), locked=(TradingState, Portfolio)) == (
        state,
        parameters,
        portfolio,
    )
    assert TradingState.load_for_fills() == (state, parameters, portfolio)


def test_values_a_caller_selected_itself_are_converted_as_the_orm_converts_them():
    from marketdata.ingest import bulk_store
    from marketdata.models import Candle

    bulk_store([("RAW_USDT", "1m", 1_735_689_600_000, 1.5, 2.25, 0.1, 35250.123456789, 1e-12)])
    expected = list(Candle.objects.values_list("symbol", "close"))
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute('SELECT "symbol", "close" FROM "marketdata_candle"')
        rows = cursor.fetchall()
    assert [[(type(v), v) for v in row] for row in converted(Candle, ("symbol", "close"), rows)] == [
        [(type(v), v) for v in row] for row in expected
    ]
