"""Risk layer 3, the data-stale watch: pause on stale data, resume on fresh data, never release someone else's stop."""

from __future__ import annotations

import io

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command

from ground import bus
from marketdata import clock
from marketdata.stale import ACTOR, CandleSeries, decide, stale_symbols, touch
from risk.data_stale import StaleWatch
from risk.models import Alert, RiskEvent, RiskParameters, TradingState
from risk.state import change_state
from risk.tasks import check_data_stale
from tests.support.paths import CANDLES

T0 = 1_730_443_200_000
SEC = 1_000
WATCHED = ["AAA_USDT", "BBB_USDT"]


@pytest.fixture(autouse=True)
def only_the_feed(settings):
    bus._consumers.cache_clear()
    settings.EVENT_CONSUMERS = {}
    yield
    bus._consumers.cache_clear()


def test_stale_means_older_than_the_timeout():
    seen = {"A": T0 - 29_999, "B": T0 - 30_000, "C": T0 - 30_001}
    assert stale_symbols(seen, ["A", "B", "C", "D"], T0, 30 * SEC) == ("C", "D")  # D was never seen
    assert decide(seen, ["A", "B"], T0, 30 * SEC, paused_by_watch=False).action is None
    pause = decide(seen, ["A", "C"], T0, 30 * SEC, paused_by_watch=False)
    assert (pause.action, pause.stale, pause.newly_stale) == ("pause", ("C",), ("C",))
    held = decide(seen, ["A", "C"], T0, 30 * SEC, paused_by_watch=True, previously_stale=["C"])
    assert (held.action, held.newly_stale) == (None, ())
    assert decide(seen, ["A", "B"], T0, 30 * SEC, paused_by_watch=True).action == "resume"


def state() -> TradingState:
    return TradingState.load()


@pytest.fixture
def watch(db, settings):
    settings.SYMBOL_WHITELIST = WATCHED
    params = RiskParameters.load()
    params.data_stale_timeout_sec = 30
    params.save()
    manual = clock.ManualClock(T0)
    with clock.use_clock(manual):
        for symbol in WATCHED:
            touch(symbol, T0)
        yield manual


def test_pause_on_stale_data_and_resume_on_fresh_data(watch):
    watcher = StaleWatch()
    watch.advance(30)
    assert watcher.check().stale == () and state().state == "ACTIVE"  # exactly 30 s is not yet stale

    touch("AAA_USDT", watch.now_ms())  # AAA keeps coming, BBB has gone quiet
    watch.advance(1)
    decision = watcher.check()
    assert decision.stale == ("BBB_USDT",) and decision.action == "pause"
    current = state()
    assert (current.state, current.changed_by) == ("PAUSED", ACTOR) and "BBB_USDT" in current.reason
    alert = Alert.objects.get(code="DATA_STALE")
    assert alert.level == "WARNING" and alert.symbol == "BBB_USDT" and alert.timestamp == T0 + 31 * SEC
    assert "30s" in alert.message

    watch.advance(10)
    assert watcher.check().action is None and Alert.objects.filter(code="DATA_STALE").count() == 1  # one alert

    touch("BBB_USDT", watch.now_ms())  # fresh market_data again
    assert watcher.check().action == "resume"
    assert state().state == "ACTIVE"
    recovery = RiskEvent.objects.filter(decision=RiskEvent.Decision.STATE_CHANGE).order_by("id").last()
    assert recovery.details == {"from": "PAUSED", "to": "ACTIVE", "actor": ACTOR}
    assert recovery.timestamp == T0 + 41 * SEC
    assert Alert.objects.filter(code="DATA_RECOVERED", level="INFO").count() == 1


def test_a_stored_candle_counts_as_fresh_data(watch):
    from marketdata.ingest import market_data_event

    watch.advance(45)
    StaleWatch().check()
    assert state().state == "PAUSED"
    for symbol in WATCHED:
        bus.publish(market_data_event(symbol, "1m", watch.now_ms(), 1, 1, 1, 1, 1))
    StaleWatch().check()
    assert state().state == "ACTIVE"


def test_the_timeout_is_the_live_risk_parameter(watch):
    params = RiskParameters.load()
    params.data_stale_timeout_sec = 10
    params.save()
    watch.advance(11)
    assert StaleWatch().check().stale == tuple(WATCHED)
    assert state().state == "PAUSED"


def test_a_halt_is_never_released_by_fresh_data(watch):
    watch.advance(31)
    StaleWatch().check()
    assert state().state == "PAUSED"
    change_state("HALTED", "daily drawdown", "risk")
    for symbol in WATCHED:
        touch(symbol, watch.now_ms())
    StaleWatch().check()
    assert state().state == "HALTED"


def test_another_layers_pause_is_left_alone(watch):
    change_state("PAUSED", "circuit breaker", "circuit_breaker")
    watch.advance(31)
    StaleWatch().check()
    current = state()
    assert (current.state, current.changed_by) == ("PAUSED", "circuit_breaker")
    assert Alert.objects.filter(code="DATA_STALE").count() == 1  # still announced
    for symbol in WATCHED:
        touch(symbol, watch.now_ms())
    StaleWatch().check()
    current = state()
    assert (current.state, current.changed_by) == ("PAUSED", "circuit_breaker"), "not the watch's pause to lift"


def test_the_beat_task(watch):
    assert django_settings.CELERY_BEAT_SCHEDULE["data-stale-watch"]["task"] == "marketdata.check_data_stale"
    watch.advance(31)
    assert check_data_stale() == WATCHED
    assert state().state == "PAUSED"


@pytest.mark.shared_data
@pytest.mark.django_db(transaction=True)
def test_a_replay_pauses_on_a_gap_in_event_time_and_resumes(tmp_path, settings):
    """Two symbols; LTC misses three 5m candles. In event time the gap is 15 min > 30 s: PAUSED, then ACTIVE."""
    settings.SYMBOL_WHITELIST = []
    header = "timestamp_ms,open,high,low,close,volume\n"
    eth = (CANDLES / "ETH_BTC-5m.csv").read_text().splitlines()[1:21]
    ltc = (CANDLES / "LTC_BTC-5m.csv").read_text().splitlines()[1:21]
    (tmp_path / "ETH_BTC-5m.csv").write_text(header + "\n".join(eth) + "\n")
    (tmp_path / "LTC_BTC-5m.csv").write_text(header + "\n".join(ltc[:8] + ltc[11:]) + "\n")
    call_command(
        "run_feed",
        "--source",
        "replay",
        "--no-progress",
        "--data",
        str(tmp_path / "ETH_BTC-5m.csv"),
        str(tmp_path / "LTC_BTC-5m.csv"),
        stdout=io.StringIO(),
        stderr=io.StringIO(),
    )
    changes = list(
        RiskEvent.objects.filter(decision=RiskEvent.Decision.STATE_CHANGE)
        .order_by("id")
        .values_list("details", "timestamp")
    )
    five_min = 300_000  # each candle is known at its close, and missing once the time of its close is complete
    first_missing = int(ltc[8].split(",")[0]) + five_min
    back = int(ltc[11].split(",")[0]) + five_min
    assert changes == [
        ({"from": "ACTIVE", "to": "PAUSED", "actor": ACTOR}, first_missing),  # the group without LTC is complete
        ({"from": "PAUSED", "to": "ACTIVE", "actor": ACTOR}, back),
    ]
    alert = Alert.objects.get(code="DATA_STALE")
    assert alert.symbol == "LTC_BTC" and alert.timestamp == first_missing
    assert state().state == "ACTIVE"


def test_a_watch_over_recorded_candles_expects_each_symbol_a_candle_at_a_time():
    minute = 60_000
    candles = {"ONE": CandleSeries(minute), "FIVE": CandleSeries(5 * minute), "OLD": CandleSeries(minute, 2 * minute)}
    seen = {"ONE": 10 * minute, "FIVE": 6 * minute, "OLD": 2 * minute}  # NEW: no candle yet
    watched = ["ONE", "FIVE", "OLD", "NEW"]
    # at minute 10: FIVE's next candle (minute 11) is not due; OLD's file ended at minute 2; NEW has not started
    assert stale_symbols(seen, watched, 10 * minute, 30_000, candles) == ()
    # at minute 11 FIVE's candle is due and missing (5 min without data > 30 s); ONE's of minute 11 is missing too
    assert stale_symbols(seen, watched, 11 * minute, 30_000, candles) == ("FIVE", "ONE")
    # a live watch (no candles): no data for more than the timeout is stale, never seen is stale
    assert stale_symbols(seen, watched, 10 * minute, 30_000) == ("FIVE", "NEW", "OLD")


def test_a_persons_halt_and_release_hand_the_watchs_pause_back(watch):
    from risk.state import halt, release

    watcher = StaleWatch()
    watch.advance(31)  # both last seen 31 s ago (> 30 s): the watch pauses
    watcher.check()
    assert (state().state, state().changed_by) == ("PAUSED", ACTOR)
    halt("feed check", "ops", timestamp=watch.now_ms())  # on top of the watch's pause: the state is the person's
    watch.advance(10)
    watcher.check()
    assert state().state == "HALTED" and Alert.objects.filter(code="DATA_STALE").count() == 1  # said already
    release("go", "ops", timestamp=watch.now_ms())
    assert state().state == "ACTIVE"
    watch.advance(10)  # still stale at the next check: paused again, with the alert ("new orders paused" is true)
    assert watcher.check().action == "pause"
    assert (state().state, state().changed_by) == ("PAUSED", ACTOR)
    assert Alert.objects.filter(code="DATA_STALE").count() == 2
    for symbol in WATCHED:
        touch(symbol, watch.now_ms())
    assert watcher.check().action == "resume" and state().state == "ACTIVE"
