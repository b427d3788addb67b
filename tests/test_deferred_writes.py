"""cdb_project.deferred_writes: queued writes ride in front of the next statement, in order, in the same
transaction; outside a deferring block (and on SQLite) each runs at once."""

from decimal import Decimal as D

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from cdb_project import deferred_writes
from cdb_project.ops import note_candle_stored
from execution.models import Portfolio, Position
from risk.models import RiskEvent
from trading.models import Signal

pytestmark = pytest.mark.django_db


def _signal(signal_id: str) -> Signal:
    return Signal(
        signal_id=signal_id, symbol="DEF_USDT", interval="1m", side="BUY", confidence=D("0.5"), reason="r",
        strategy="s", price=D("1.5"), timestamp=1_735_689_600_000,
    )  # fmt: skip


def _sent(round_trips: list[str]):
    """An execute wrapper installed inside the deferring block: it sees what actually goes to the server."""

    def wrapper(execute, sql, params, many, context):
        round_trips.append(sql)
        return execute(sql, params, many, context)

    return wrapper


@pytest.mark.postgres
def test_queued_writes_go_with_the_next_statement_in_order():
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only: SQLite runs one statement per execute")
    portfolio = Portfolio.load()
    # as the signal path does before a signal: its candle's stored time is noted, so the signal_latency_seconds
    # hook (post_save, which insert sends) reads nothing
    note_candle_stored("DEF_USDT", "1m", _signal("DEF:1").timestamp, timezone.now())
    round_trips: list[str] = []
    with transaction.atomic(), deferred_writes.deferring(), connection.execute_wrapper(_sent(round_trips)):
        deferred_writes.insert(_signal("DEF:1"))
        portfolio.cash = D("123.45")
        deferred_writes.update(portfolio, ["cash", "updated_at"])
        deferred_writes.upsert(Position(symbol="DEF_USDT", quantity=D("2")), "symbol", ["quantity", "updated_at"])
        assert round_trips == [], "nothing sent yet"
        # the next statement carries them, and its result is its own; a "%" in it stays a "%"
        with connection.cursor() as cursor:
            cursor.execute("SELECT '100%', (SELECT COUNT(*) FROM trading_signal WHERE signal_id = 'DEF:1')")
            assert cursor.fetchone() == ("100%", 1), "the queued INSERT ran before the statement it rode with"
        assert len(round_trips) == 1 and round_trips[0].count(";") == 3
        deferred_writes.upsert(Position(symbol="DEF_USDT", quantity=D("3")), "symbol", ["quantity", "updated_at"])
        deferred_writes.insert(RiskEvent(decision="APPROVE", symbol="DEF_USDT", reason="ok", timestamp=1))
    assert len(round_trips) == 1  # what was left went out on leaving the block:
    stored = Signal.objects.get(signal_id="DEF:1")
    assert stored.created_at is not None and stored.price == D("1.5")
    assert Portfolio.objects.get().cash == D("123.45")
    assert list(Position.objects.values_list("symbol", "quantity")) == [("DEF_USDT", D("3"))], "inserted, updated"
    assert RiskEvent.objects.filter(symbol="DEF_USDT").count() == 1


@pytest.mark.postgres
def test_a_failing_queued_write_fails_the_transaction_at_the_next_statement():
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only")
    deferred_writes.insert(_signal("DEF:dup"))  # outside a block: at once
    assert Signal.objects.filter(signal_id="DEF:dup").exists()
    with pytest.raises(IntegrityError), transaction.atomic(), deferred_writes.deferring():
        deferred_writes.insert(RiskEvent(decision="APPROVE", symbol="DEF_USDT", reason="lost", timestamp=1))
        deferred_writes.insert(_signal("DEF:dup"))
        Portfolio.load()
    assert not RiskEvent.objects.filter(reason="lost").exists(), "rolled back with the rest"
    # and a block left with an exception sends nothing it still held
    with pytest.raises(RuntimeError), transaction.atomic(), deferred_writes.deferring():
        deferred_writes.insert(RiskEvent(decision="APPROVE", symbol="DEF_USDT", reason="dropped", timestamp=1))
        raise RuntimeError
    assert not RiskEvent.objects.filter(reason="dropped").exists()


def test_without_a_block_or_a_transaction_each_write_runs_at_once():
    with deferred_writes.deferring():  # not in a transaction: nothing to defer to
        deferred_writes.insert(_signal("DEF:now"))
        assert Signal.objects.filter(signal_id="DEF:now").exists()
    position = Position(symbol="NOW_USDT", quantity=D("1"))
    deferred_writes.upsert(position, "symbol", ["quantity", "updated_at"])
    deferred_writes.upsert(Position(symbol="NOW_USDT", quantity=D("4")), "symbol", ["quantity", "updated_at"])
    stored = Position.objects.get(symbol="NOW_USDT")
    assert stored.quantity == D("4") and stored.updated_at is not None
    stored.quantity = D("5")
    deferred_writes.update(stored, ["quantity"])
    assert Position.objects.get(symbol="NOW_USDT").quantity == D("5")


def test_inserts_and_updates_send_the_signals_save_sends():
    from django.db.models.signals import post_save, pre_save

    seen = []

    def receiver(signal, sender, instance, **kwargs):
        seen.append((signal, sender, kwargs.get("created"), kwargs.get("update_fields")))

    pre_save.connect(receiver, sender=Position, weak=False, dispatch_uid="test-deferred-pre")
    post_save.connect(receiver, sender=Position, weak=False, dispatch_uid="test-deferred-post")
    try:
        position = Position(symbol="SIG_USDT", quantity=D("1"))
        deferred_writes.insert(position)
        stored = Position.objects.get(symbol="SIG_USDT")
        stored.quantity = D("2")
        deferred_writes.update(stored, ["quantity"])
    finally:
        pre_save.disconnect(dispatch_uid="test-deferred-pre", sender=Position)
        post_save.disconnect(dispatch_uid="test-deferred-post", sender=Position)
    assert seen == [
        (pre_save, Position, None, None),
        (post_save, Position, True, None),
        (pre_save, Position, None, frozenset({"quantity"})),
        (post_save, Position, False, frozenset({"quantity"})),
    ]
    assert Position.objects.get(symbol="SIG_USDT").quantity == D("2")
