from django.contrib import admin

from ground.admin_history import EXACT, FRACTION, MONEY, PRICE, QUANTITY, HistoryAdmin, HistoryInline

from .models import (
    Candle,
    CandleSeries,
    DataFreshness,
    FeedSymbol,
    MarketClock,
    StaleWatchState,
    WatchList,
    WatchListEntry,
)


@admin.register(Candle)
class CandleAdmin(HistoryAdmin):
    list_display = ("symbol", "interval", "timestamp", "open", "high", "low", "close", "volume")
    ordering = ("-timestamp", "symbol", "interval")  # newest first, as every history list (the model's is the API's)
    list_filter = ("interval", "symbol")
    search_fields = ("symbol",)
    amounts = {**dict.fromkeys(("open", "high", "low", "close"), PRICE), "volume": QUANTITY}


@admin.register(CandleSeries)
class CandleSeriesAdmin(HistoryAdmin):
    """The database triggers on the candle table keep these rows."""

    list_display = ("symbol", "interval", "newest", "revision")
    list_filter = ("interval",)
    search_fields = ("symbol",)


# pct_change is a fraction over the look-back (0.012 = +1.2 %), quote_volume Σ close × volume in the quote
WATCH_LIST_AMOUNTS = {"score": EXACT, "pct_change": FRACTION, "quote_volume": MONEY}


class WatchListEntryInline(HistoryInline):
    model = WatchListEntry
    fields = ("rank", "symbol", "score", "pct_change", "quote_volume")
    amounts = WATCH_LIST_AMOUNTS


@admin.register(WatchList)
class WatchListAdmin(HistoryAdmin):
    """One screener run's ranking (the symbols come from SYMBOL_WHITELIST, TOP_N and LOOKBACK_MINUTES)."""

    list_display = ("as_of_ms", "interval", "lookback_minutes", "top_n", "created_at")
    list_filter = ("interval", "top_n")
    search_fields = ("entries__symbol",)
    inlines = [WatchListEntryInline]


@admin.register(WatchListEntry)
class WatchListEntryAdmin(HistoryAdmin):
    """Every ranking row, so one symbol's history on the watch list can be searched."""

    list_display = ("watchlist", "rank", "symbol", "score", "pct_change", "quote_volume")
    list_filter = ("rank", "watchlist__interval")
    search_fields = ("symbol",)
    amounts = WATCH_LIST_AMOUNTS


@admin.register(DataFreshness)
class DataFreshnessAdmin(HistoryAdmin):
    list_display = ("symbol", "last_seen_ms")
    list_filter = ("symbol",)
    search_fields = ("symbol",)


@admin.register(FeedSymbol)
class FeedSymbolAdmin(HistoryAdmin):
    list_display = ("symbol", "source", "registered_at")
    list_filter = ("source",)
    search_fields = ("symbol",)


@admin.register(MarketClock)
class MarketClockAdmin(HistoryAdmin):
    list_display = ("mode", "event_time_ms", "updated_at")
    list_filter = ("mode",)
    search_fields = ("mode",)


@admin.register(StaleWatchState)
class StaleWatchStateAdmin(HistoryAdmin):
    list_display = ("paused_by_watch", "stale_symbols", "changed_at_ms")
    list_filter = ("paused_by_watch",)
    search_fields = ("stale_symbols",)
