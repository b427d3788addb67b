"""The live beat's data-stale watch (`marketdata.check_data_stale`) expires the paper orders of a stale symbol, as
the replay's and the backtest's watch do (`Desk.expire`): an entry EXPIRED with ORDER_EXPIRED and its cost free
again; a risk exit cancelled (REJECTED, ORDER_FAILED) and decided again on the symbol's next candle. Real
PostgreSQL and Redis, candles through the bus, the task run as the beat runs it."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import transaction

from execution.models import Order, Portfolio
from marketdata import clock
from marketdata.ingest import market_data_event
from marketdata.stale import ACTOR
from risk.account_view import load_account
from risk.models import Alert, RiskParameters, TradingState
from risk.tasks import check_data_stale
from tests.support import series

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres, pytest.mark.redis]

STALE, FRESH = "AAA_USDT", "BBB_USDT"
TIMEOUT_SEC = 120


@pytest.fixture
def market(settings, sma_cross):
    settings.SYMBOL_WHITELIST = [STALE, FRESH]
    parameters = RiskParameters.load()
    parameters.data_stale_timeout_sec = TIMEOUT_SEC
    parameters.save()
    with clock.use_clock(clock.ManualClock(series.BASE_TS)) as manual:
        yield manual


def publish(symbol: str, ts: int, price: float) -> None:
    from ground import bus

    bus.publish(market_data_event(symbol, "1m", ts, price, price * 1.001, price * 0.999, price, 100))


def publish_both(evts: list[dict], manual: clock.ManualClock) -> None:
    """``evts`` (of STALE), with a flat FRESH candle at each time: FRESH stays fresh."""
    from ground import bus

    for event in evts:
        publish(FRESH, event["timestamp"], 50.0)
        bus.publish(event)
        manual.set(event["timestamp"] + series.STEP_MS)


def account_cash() -> Decimal:
    with transaction.atomic():
        return load_account(TradingState.load().state, clock.now_ms(), (STALE,), for_decision=False).cash


def the_beat_after_silence(manual: clock.ManualClock, last_ts: int) -> list[str]:
    """STALE says nothing for longer than the timeout while FRESH goes on; then the beat's task."""
    quiet_until = last_ts + (TIMEOUT_SEC + 60) * 1000
    for ts in range(last_ts + series.STEP_MS, quiet_until + 1, series.STEP_MS):
        publish(FRESH, ts, 50.0)
    manual.set(quiet_until + series.STEP_MS)
    return check_data_stale.apply().get()


def test_the_beat_expires_a_stale_symbols_waiting_entry_and_frees_its_cost(market):
    evts = series.events(STALE)
    publish_both(evts, market)  # the crossing: a BUY decided at its close, waiting for STALE's next candle
    entry = Order.objects.get(symbol=STALE, purpose=Order.Purpose.ENTRY)
    assert entry.status == "PENDING"
    cash = Portfolio.load().cash
    assert account_cash() < cash  # its estimated cost is held back

    assert the_beat_after_silence(market, evts[-1]["timestamp"]) == [STALE]

    entry.refresh_from_db()
    assert entry.status == "EXPIRED" and f"{STALE}'s market data is stale" in entry.reason, entry.reason
    alert = Alert.objects.get(code="ORDER_EXPIRED")
    assert (alert.level, alert.symbol, alert.timestamp) == ("WARNING", STALE, market.now_ms())
    assert account_cash() == cash == Portfolio.load().cash  # nothing held back any more, nothing spent
    state = TradingState.load()
    assert (state.state, state.changed_by) == ("PAUSED", ACTOR)
    assert not Order.objects.filter(status="PENDING").exists()


def test_the_beat_cancels_a_stale_symbols_stop_loss_which_is_decided_again_on_its_next_candle(market):
    evts = series.filled_events(STALE)  # the BUY fills at NEXT_OPEN × 1.0005 ≈ 110.255: its stop ≈ 108.05
    publish_both(evts, market)
    assert Order.objects.get(purpose=Order.Purpose.ENTRY).status == "FILLED"
    crash_ts = evts[-1]["timestamp"] + series.STEP_MS
    publish_both([market_data_event(STALE, "1m", crash_ts, 100, 100.1, 99.9, 100, 100)], market)
    stop = Order.objects.get(purpose=Order.Purpose.STOP_LOSS)
    assert stop.status == "PENDING"  # waiting for STALE's next candle, which does not come

    assert the_beat_after_silence(market, crash_ts) == [STALE]

    stop.refresh_from_db()
    assert stop.status == "REJECTED" and "market data is stale" in stop.reason, stop.reason
    assert Alert.objects.filter(code="ORDER_FAILED", symbol=STALE).count() == 1
    assert not Alert.objects.filter(code="ORDER_EXPIRED").exists()

    back = market.now_ms()
    publish_both([market_data_event(STALE, "1m", back, 99, 99.1, 98.9, 99, 100)], market)  # STALE is back, low
    again = Order.objects.filter(purpose=Order.Purpose.STOP_LOSS).exclude(pk=stop.pk).get()
    assert again.signal_id == f"{stop.signal_id}#1" and again.status == "PENDING"
    assert Alert.objects.filter(code="RISK_LIMIT", level="CRITICAL", message__contains="attempt 2").exists()
    publish_both([market_data_event(STALE, "1m", back + series.STEP_MS, 98, 98.1, 97.9, 98, 100)], market)
    again.refresh_from_db()
    assert again.status == "FILLED"
