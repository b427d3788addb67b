"""ground.prepared: a queryset compiled once returns, for any values, what the queryset itself returns (values,
types, instances, annotations, locks), on PostgreSQL and SQLite, and compiles once."""

from decimal import Decimal as D

import pytest
from django.db.models import F, Subquery
from django.db.models.sql.compiler import SQLCompiler

from execution.models import Order, Position, Trade
from ground.prepared import Prepared
from marketdata.ingest import bulk_store
from marketdata.models import Candle, CandleSeries

pytestmark = pytest.mark.django_db


def _values(instance) -> dict:
    fields = instance._meta.concrete_fields
    return {f.attname: (type(getattr(instance, f.attname)), getattr(instance, f.attname)) for f in fields}


def _typed(rows) -> list:
    return [[(type(v), v) for v in row] for row in rows]


def _candles() -> None:
    rows = [
        ("AAA_USDT", "1m", 1_735_689_600_000 + n * 60_000, 1.5 + n, 2.25, 0.1, 35250.123456789, 1e-12) for n in range(6)
    ]
    rows += [
        ("AAA_USDT", "5m", 1_735_689_600_000, 1, 2, 0.5, 1.75, 3),
        ("BBB_USDT", "1m", 1_735_689_600_000, 1, 1, 1, 1, 1),
    ]
    bulk_store(rows)


def _recent(symbol, interval, last):
    revision = CandleSeries.objects.filter(symbol=symbol, interval=interval).values("revision")
    return (
        Candle.objects.filter(symbol=symbol, interval=interval, timestamp__lte=last)
        .annotate(series_revision=Subquery(revision))
        .order_by("-timestamp")
        .values_list("timestamp", "close", "volume", "created_at", "series_revision")[:3]
    )


def test_values_lists_equal_the_querysets_for_other_values_and_compile_once(monkeypatch):
    _candles()
    read = Prepared(_recent, str, str, int)

    def closes(symbol):
        return Candle.objects.filter(symbol=symbol).order_by("id").values_list("close", flat=True)

    flat = Prepared(closes, str)
    compiled = []
    original = SQLCompiler.as_sql

    def counting(self, *args, **kwargs):
        compiled.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SQLCompiler, "as_sql", counting)
    for symbol, interval, last in [
        ("AAA_USDT", "1m", 1_735_689_780_000),
        ("AAA_USDT", "5m", 2**62),
        ("CCC_USDT", "1m", 0),
    ]:
        expected = list(_recent(symbol, interval, last))
        assert _typed(read(symbol, interval, last)) == _typed(expected)
        assert [(type(v), v) for v in flat(symbol)] == [(type(v), v) for v in closes(symbol)]
    assert read("AAA_USDT", "1m", 1_735_689_780_000)[0][0] == 1_735_689_780_000
    compiled.clear()
    read("BBB_USDT", "1m", 2**62), flat("BBB_USDT")
    assert compiled == [], "compiled again"


def test_instances_with_an_annotation_and_a_lock_equal_the_querysets():
    order = Order.objects.create(
        client_order_id="cdbprep1", symbol="AAA_USDT", side="BUY", quantity=D("1.123456789012"),
        requested_price=D("35250.5"), event_time=1_735_689_600_000, risk_checks=["drawdown"],
    )  # fmt: skip
    for n in range(2):
        Trade.objects.create(
            trade_id=f"T-prep{n}", order=order, symbol="AAA_USDT", quantity=D("1.1"), entry_price=D("35260.1"),
            entry_time=order.submitted_at or "2025-01-01T00:00Z", entry_fees=D("0.035"),
        )  # fmt: skip
    Position.objects.create(symbol="AAA_USDT", quantity=D("1.1"), cost_basis=D("38786.11"), avg_entry_price=D("3"))
    Position.objects.create(symbol="BBB_USDT", quantity=D("0"), cost_basis=D("0"), avg_entry_price=D("0"))

    def trades(symbol):
        return (
            Trade.objects.select_for_update(of=("self",))
            .filter(symbol=symbol, status=Trade.Status.OPEN)
            .annotate(entry=F("order__client_order_id"))
            .order_by("entry_time", "id")
        )

    read = Prepared(trades, str)
    got, expected = read("AAA_USDT"), list(trades("AAA_USDT"))
    assert len(got) == 2 and [_values(t) for t in got] == [_values(t) for t in expected]
    assert [t.entry for t in got] == ["cdbprep1", "cdbprep1"] and not got[0]._state.adding
    assert read("BBB_USDT") == []
    positions = Prepared(lambda: Position.objects.filter(quantity__gt=0).order_by("symbol"))
    assert [_values(p) for p in positions()] == [_values(Position.objects.get(symbol="AAA_USDT"))]


def test_what_it_cannot_send_as_given_is_refused():
    with pytest.raises(TypeError):
        Prepared(lambda price: Candle.objects.filter(close=price), D)
    with pytest.raises(ValueError, match="not among"):
        Prepared(lambda symbol: Candle.objects.filter(symbol__startswith=symbol).values_list("id"), str)()
    with pytest.raises(ValueError, match="not supported"):
        Prepared(lambda: Candle.objects.values("id"))()


def test_a_lookup_that_escapes_its_value_is_refused_where_it_escapes_and_equal_where_it_does_not():
    """SQLite compiles iexact to LIKE with the value escaped (a ``_`` there would match any character):
    the placeholder holds LIKE's characters, so the escaped one is not found and the read is refused. PostgreSQL
    compiles it to UPPER(..) = UPPER(..) with the value as given: equal to the queryset."""
    from django.db import connection

    bulk_store([(symbol, "1m", 1_735_689_600_000, 1, 2, 0.5, 1, 3) for symbol in ("AAA_USDT", "AAAxUSDT")])

    def build(symbol):
        return Candle.objects.filter(symbol__iexact=symbol).values_list("symbol", flat=True)

    read = Prepared(build, str)
    if connection.vendor == "sqlite":
        with pytest.raises(ValueError, match="not among"):
            read("aaa_usdt")
    else:
        assert read("aaa_usdt") == list(build("aaa_usdt")) == ["AAA_USDT"]


def test_a_value_derived_from_a_parameter_is_refused():
    """``at - 120_000`` is compiled from the placeholder: it would never follow the call's ``at``. Compiled with two
    sets of placeholders, the derived parameter differs between them, and the read is refused."""
    _candles()

    def build(at):
        return Candle.objects.filter(timestamp__lte=at, timestamp__gt=at - 120_000).values_list("timestamp", flat=True)

    with pytest.raises(ValueError, match="depends on its values"):
        Prepared(build, int)(1_735_689_600_000 + 5 * 60_000)


@pytest.mark.django_db(transaction=True)
def test_a_locking_read_outside_a_transaction_is_refused_on_every_call():
    """The ORM refuses ``select_for_update`` in autocommit when it compiles; a compiled read refuses it each call."""
    from django.db import connection, transaction

    locked = Prepared(lambda: Position.objects.select_for_update().filter(quantity__gt=0))
    with transaction.atomic():
        locked()  # compiled here, as the fill step compiles it
    if not connection.features.has_select_for_update:
        return  # (SQLite: no row locks, Django lets it through)
    with pytest.raises(transaction.TransactionManagementError):
        list(Position.objects.select_for_update().filter(quantity__gt=0))
    with pytest.raises(transaction.TransactionManagementError):
        locked()


def _order(client_order_id: str) -> Order:
    return Order.objects.create(
        client_order_id=client_order_id, symbol="AAA_USDT", side="BUY", quantity=D("1.123456789012"),
        requested_price=D("35250.5"), event_time=1_735_689_600_000, risk_checks=["drawdown"],
    )  # fmt: skip


def _stored(model, pk) -> dict:
    values = _values(model.objects.get(pk=pk))
    return {
        name: value
        for name, value in values.items()
        if name not in ("id", "client_order_id", "created_at", "updated_at")
    }


def test_an_update_stores_what_save_stores_and_refuses_a_missing_row():
    """PreparedUpdate writes the row ``save()`` (or ``save(update_fields=…)``) writes, ``auto_now`` included, a
    None and a foreign key too; a row that is not stored is an error, not an insert."""
    from django.db import DatabaseError
    from django.utils import timezone

    from execution.models import Portfolio
    from ground.prepared import PreparedUpdate

    saved, prepared = _order("cdbprep-a"), _order("cdbprep-b")
    filled_at = timezone.now()
    for order in (saved, prepared):
        order.status, order.reason, order.order_id = Order.Status.FILLED, "filled ✓", "X-1"
        order.filled_quantity, order.price, order.fees = D("1.123456789012"), D("35260.100000000001"), D("0.035")
        order.filled_at, order.stop_loss, order.result_published = filled_at, None, True
    before = timezone.now()
    saved.save()
    PreparedUpdate(Order)(prepared)
    assert _stored(Order, prepared.pk) == _stored(Order, saved.pk)
    portfolio = Portfolio.load()
    portfolio.cash = D("123.000000000001")
    PreparedUpdate(Portfolio, ["cash", "updated_at"])(portfolio)
    stored = Portfolio.objects.get(pk=portfolio.pk)
    assert stored.cash == D("123.000000000001") and stored.updated_at >= before  # auto_now, as save() sets it

    trade = Trade.objects.create(
        trade_id="T-upd", order=saved, symbol="AAA_USDT", quantity=D("1.1"), entry_price=D("35260.1"),
        entry_time=timezone.now(), entry_fees=D("0.035"),
    )  # fmt: skip
    trade.exit_order, trade.exit_price, trade.status = prepared, D("36000"), Trade.Status.CLOSED
    trade.quantity = D("7")  # not among the fields: not written
    PreparedUpdate(Trade, ["exit_order", "exit_price", "status"])(trade)
    stored = Trade.objects.get(pk=trade.pk)
    assert (stored.exit_order_id, stored.exit_price, stored.status, stored.quantity) == (
        prepared.pk, D("36000"), Trade.Status.CLOSED, D("1.1")
    )  # fmt: skip

    missing = Order(pk=10**9, client_order_id="cdbprep-none", symbol="AAA_USDT", side="BUY", quantity=D(1))
    with pytest.raises(DatabaseError):
        PreparedUpdate(Order)(missing)
    assert not Order.objects.filter(client_order_id="cdbprep-none").exists()
    with pytest.raises(ValueError):
        PreparedUpdate(Order, ["id"])


def test_the_models_updated_through_the_seam_have_no_save_signals():
    """PreparedUpdate sends no pre_save/post_save: the models risk.order_service saves through it have none."""
    from django.db.models.signals import post_save, pre_save

    from execution.models import Portfolio
    from risk import order_service

    updates = (order_service._save_order, order_service._save_portfolio_totals, order_service._save_closed_trade)
    assert {update.model for update in updates} == {Order, Portfolio, Trade}
    for model in (Order, Portfolio, Trade):
        assert not pre_save.has_listeners(model) and not post_save.has_listeners(model), model
