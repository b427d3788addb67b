"""The screener ranks by % change and volume over the look-back window, on hand-worked numbers."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.conf import settings as django_settings

from marketdata.models import Candle, FeedSymbol, WatchList
from marketdata.screener import ScreenCandle, rank
from marketdata.tasks import screen_symbols
from marketdata.watchlist import is_tradable, register_feed_symbols, run_screener

MIN = 60_000
NOW = 1_730_443_200_000  # 2024-11-01 06:40 UTC; the window holds candles that opened 06:25 … 06:39

# symbol: [(minutes before NOW, open, close, volume)]; only the first and last candle in the window move
MARKET = {
    # pct = (110 − 100) / 100 = +10 %;  quote volume = 100·10 + 110·10 = 2,100
    "AAA_USDT": [(15, "100", "100", "10"), (1, "100", "110", "10"), (0, "110", "500", "10")],
    # pct = (47.5 − 50) / 50 = −5 %;  quote volume = 50·300 + 47.5·300 = 29,250
    "BBB_USDT": [(16, "40", "50", "9999"), (15, "50", "50", "300"), (1, "50", "47.5", "300")],
    # pct = (10.2 − 10) / 10 = +2 %;  quote volume = 10·1000 + 10.2·1000 = 20,200
    "CCC_USDT": [(15, "10", "10", "1000"), (1, "10", "10.2", "1000")],
    # pct = (1.01 − 1) / 1 = +1 %;  quote volume = 1·10 + 1.01·10 = 20.1
    "DDD_USDT": [(15, "1", "1", "10"), (1, "1", "1.01", "10")],
    # nothing inside the window
    "EEE_USDT": [(20, "5", "9", "1000")],
}
# |change| places: AAA 1, BBB 2, CCC 3, DDD 4; volume places: BBB 1, CCC 2, AAA 3, DDD 4
# scores: BBB 2+1 = 3, AAA 1+3 = 4, CCC 3+2 = 5, DDD 4+4 = 8
EXPECTED = [("BBB_USDT", 3), ("AAA_USDT", 4), ("CCC_USDT", 5), ("DDD_USDT", 8)]


def screen_candles(window_end: int = NOW - MIN) -> dict[str, list[ScreenCandle]]:
    return {
        symbol: [
            ScreenCandle(NOW - m * MIN, Decimal(o), Decimal(c), Decimal(v))
            for m, o, c, v in rows
            if NOW - m * MIN <= window_end
        ]
        for symbol, rows in MARKET.items()
    }


def test_rank_by_change_and_volume_on_hand_worked_numbers():
    scores = rank(screen_candles(), now_ms=NOW - MIN, lookback_ms=14 * MIN, top_n=10)
    assert [(s.symbol, s.score) for s in scores] == EXPECTED
    bbb = scores[0]
    assert bbb.pct_change == Decimal("-0.05") and bbb.quote_volume == Decimal("29250")
    assert (bbb.change_rank, bbb.volume_rank, bbb.rank) == (2, 1, 1)
    aaa = scores[1]
    assert aaa.pct_change == Decimal("0.1") and aaa.quote_volume == Decimal("2100")
    assert [s.symbol for s in rank(screen_candles(), now_ms=NOW - MIN, lookback_ms=14 * MIN, top_n=2)] == [
        "BBB_USDT",
        "AAA_USDT",
    ]


def test_ties_go_to_the_bigger_mover_and_the_universe_limits_the_ranking():
    universe = ["AAA_USDT", "CCC_USDT", "DDD_USDT", "EEE_USDT"]
    scores = rank(screen_candles(), now_ms=NOW - MIN, lookback_ms=14 * MIN, top_n=10, universe=universe)
    # change: AAA 1, CCC 2, DDD 3; volume: CCC 1, AAA 2, DDD 3 → AAA 3, CCC 3 (tie: AAA moved more), DDD 6
    assert [(s.symbol, s.score) for s in scores] == [("AAA_USDT", 3), ("CCC_USDT", 3), ("DDD_USDT", 6)]
    assert rank({}, now_ms=NOW, lookback_ms=15 * MIN, top_n=10) == []


@pytest.fixture
def market_in_store(db):
    Candle.objects.bulk_create(
        Candle(
            symbol=symbol,
            interval="1m",
            timestamp=NOW - m * MIN,
            open=Decimal(o),
            high=max(Decimal(o), Decimal(c)),
            low=min(Decimal(o), Decimal(c)),
            close=Decimal(c),
            volume=Decimal(v),
        )
        for symbol, rows in MARKET.items()
        for m, o, c, v in rows
    )


def test_the_screener_stores_the_watch_list_with_its_scores(market_in_store, settings):
    settings.SYMBOL_WHITELIST, settings.LOOKBACK_MINUTES, settings.TOP_N, settings.INTERVAL = [], 15, 3, "1m"
    watchlist = run_screener(now_ms=NOW)
    assert watchlist.symbols() == ["BBB_USDT", "AAA_USDT", "CCC_USDT"]
    assert (watchlist.as_of_ms, watchlist.lookback_minutes, watchlist.top_n) == (NOW, 15, 3)
    entries = list(watchlist.entries.order_by("rank").values_list("symbol", "score", "pct_change", "quote_volume"))
    assert entries[0] == ("BBB_USDT", Decimal(3), Decimal("-0.05"), Decimal("29250"))
    assert entries[1] == ("AAA_USDT", Decimal(4), Decimal("0.1"), Decimal("2100"))

    # only watched symbols are tradable
    assert is_tradable("BBB_USDT") and is_tradable("CCC_USDT")
    assert not is_tradable("DDD_USDT") and not is_tradable("EEE_USDT")

    settings.SYMBOL_WHITELIST = ["AAA_USDT", "CCC_USDT", "DDD_USDT", "EEE_USDT"]
    settings.TOP_N = 2
    assert run_screener(now_ms=NOW).symbols() == ["AAA_USDT", "CCC_USDT"]
    assert not is_tradable("BBB_USDT"), "not whitelisted any more"
    assert WatchList.objects.count() == 2


def test_the_beat_task_ranks_every_minute_on_the_market_clock(market_in_store, settings):
    from marketdata import clock

    settings.SYMBOL_WHITELIST, settings.TOP_N = [], 10
    schedule = django_settings.CELERY_BEAT_SCHEDULE["screener"]
    assert schedule["task"] == "marketdata.screen_symbols" and schedule["schedule"] == 60.0
    with clock.use_clock(clock.ManualClock(NOW)):
        assert screen_symbols.delay().get() == [s for s, _ in EXPECTED]


def test_is_tradable_before_any_list_and_for_replayed_symbols(db, settings):
    settings.SYMBOL_WHITELIST = []
    assert is_tradable("ANY_USDT"), "no whitelist, no screener list yet: nothing restricts trading"
    settings.SYMBOL_WHITELIST = ["BTC_USDT"]
    assert is_tradable("BTC_USDT") and not is_tradable("ANY_USDT")
    settings.SYMBOL_WHITELIST = []
    WatchList.objects.create(as_of_ms=NOW, lookback_minutes=15, top_n=10, interval="1m")  # an empty list
    assert not is_tradable("ETH_BTC")
    register_feed_symbols(["ETH_BTC"], "replay")
    assert is_tradable("ETH_BTC"), "replayed symbols trade without a screener list"
    assert FeedSymbol.objects.get(symbol="ETH_BTC").source == "replay"


def test_a_new_feed_run_replaces_the_previous_runs_symbols(db, settings):
    settings.SYMBOL_WHITELIST = []
    WatchList.objects.create(as_of_ms=NOW, lookback_minutes=15, top_n=10, interval="1m")
    register_feed_symbols(["ETH_BTC", "LTC_BTC"], "replay")
    register_feed_symbols(["BTC_USDT"], "sim")
    assert list(FeedSymbol.objects.values_list("symbol", "source")) == [("BTC_USDT", "sim")]
    assert is_tradable("BTC_USDT") and not is_tradable("ETH_BTC")
