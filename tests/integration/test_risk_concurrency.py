"""Many deciders at once on PostgreSQL: the account lock keeps every limit, and a committed halt wins."""

import threading
from decimal import Decimal as D

import pytest
from django.db import connection

from execution.models import Order, Position
from ground import bus
from marketdata.ingest import market_data_event
from marketdata.models import Candle
from risk.decision_service import decide_signal
from risk.models import RiskEvent, RiskParameters
from risk.state import halt
from trading.signal_service import mark_decided

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
THREADS = 8
TS = 1_730_443_200_000
SYMBOLS = [f"C{i}_USDT" for i in range(THREADS)]


@pytest.fixture(autouse=True)
def _market(settings):
    settings.PAPER_FAILURE_RATE = "0"
    for symbol in SYMBOLS:
        bus.publish(market_data_event(symbol, "1m", TS, 100, 100.1, 99.9, 100, 1000))
    assert Candle.objects.count() == THREADS


def _signal(symbol: str) -> dict:
    return {
        "type": "signal",
        "symbol": symbol,
        "side": "BUY",
        "confidence": 0.9,
        "reason": "concurrency",
        "timestamp": TS,
        "signal_id": f"{symbol}:concurrent",
    }


def _fire(signals: list[dict], extra=None) -> list[BaseException]:
    barrier = threading.Barrier(len(signals) + (1 if extra else 0))
    errors: list[BaseException] = []

    def run(target, *args):
        try:
            barrier.wait()
            target(*args)
        except BaseException as error:  # surfaced by the test
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(decide_signal, s, mark_decided)) for s in signals]
    if extra:
        threads.append(threading.Thread(target=run, args=extra))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return errors


def test_concurrent_entries_never_exceed_the_exposure_limit():
    # Exposure limit 0.30 × 10,000 = 3,000; each signal asks for 0.10 × equity ≈ 1,000. Without the lock all
    # eight would see zero exposure and buy 8,000 worth.
    RiskParameters.load()
    RiskParameters.objects.update(max_exposure_pct=D("0.30"))
    assert _fire([_signal(s) for s in SYMBOLS]) == []

    # Each approval, with the numbers it was decided on (pending orders included): exposure after ≤ 0.30 × equity.
    approvals = RiskEvent.objects.filter(decision__in=["APPROVE", "TRIM"]).order_by("id")
    for event in approvals:
        after = D(event.details["exposure"]) + event.approved_quantity * D(event.details["price"])
        assert after <= D("0.30") * D(event.details["equity"]), event.reason
    for symbol in SYMBOLS:  # the approved orders fill at the next candle's open, 100
        bus.publish(market_data_event(symbol, "1m", TS + 60_000, 100, 100.1, 99.9, 100, 1000))
    exposure = sum(p.quantity * D(100) for p in Position.objects.all())
    assert D("2990") < exposure <= D("3000")  # the limit was reached, never passed
    assert Order.objects.filter(status=Order.Status.FILLED).count() == approvals.count() >= 3
    assert RiskEvent.objects.filter(layer="exposure", decision="REJECT").count() >= 1
    assert RiskEvent.objects.exclude(decision="STATE_CHANGE").count() == THREADS  # every decision stored once


def test_a_halt_racing_the_signals_blocks_every_decision_after_it():
    errors = _fire([_signal(s) for s in SYMBOLS], extra=(halt, "race", "tester"))
    assert errors == []
    halt_event = RiskEvent.objects.get(decision="STATE_CHANGE")
    decisions = RiskEvent.objects.exclude(decision="STATE_CHANGE")
    assert decisions.count() == THREADS
    # Ids are drawn inside the lock, so they order the decisions: nothing after the halt passed.
    after = decisions.filter(id__gt=halt_event.id)
    assert all(d.decision == "REJECT" and d.layer == "state" for d in after)
    approved_ids = set(
        decisions.filter(id__lt=halt_event.id).exclude(decision="REJECT").values_list("client_order_id", flat=True)
    )
    assert (
        set(Order.objects.filter(status=Order.Status.FILLED).values_list("client_order_id", flat=True)) <= approved_ids
    )


def test_a_committed_halt_blocks_all_later_signals():
    halt("before", actor="tester")
    assert _fire([_signal(s) for s in SYMBOLS]) == []
    assert not Order.objects.exists()
    assert RiskEvent.objects.filter(decision="REJECT", layer="state").count() == THREADS
