from django.contrib import admin

from ground.admin_history import HistoryAdmin

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
    list_filter = ("interval", "symbol")
    search_fields = ("symbol",)


@admin.register(CandleSeries)
class CandleSeriesAdmin(admin.ModelAdmin):
    """Read only: the database triggers on the candle table keep these rows."""

    list_display = ("symbol", "interval", "newest", "revision")
    list_filter = ("interval",)
    search_fields = ("symbol",)
    readonly_fields = list_display

    def has_add_permission(self, request) -> bool:
        return False


class WatchListEntryInline(admin.TabularInline):
    model = WatchListEntry
    extra = 0
    fields = ("rank", "symbol", "score", "pct_change", "quote_volume")
    readonly_fields = fields
    can_delete = False


@admin.register(WatchList)
class WatchListAdmin(admin.ModelAdmin):
    list_display = ("as_of_ms", "interval", "lookback_minutes", "top_n", "created_at")
    list_filter = ("interval", "top_n")
    search_fields = ("entries__symbol",)
    readonly_fields = ("as_of_ms", "interval", "lookback_minutes", "top_n", "created_at")
    inlines = [WatchListEntryInline]


@admin.register(WatchListEntry)
class WatchListEntryAdmin(admin.ModelAdmin):
    """Every ranking row, so one symbol's history on the watch list can be searched."""

    list_display = ("watchlist", "rank", "symbol", "score", "pct_change", "quote_volume")
    list_filter = ("rank", "watchlist__interval")
    search_fields = ("symbol",)
    readonly_fields = ("watchlist", "rank", "symbol", "score", "pct_change", "quote_volume")


@admin.register(DataFreshness)
class DataFreshnessAdmin(admin.ModelAdmin):
    list_display = ("symbol", "last_seen_ms")
    list_filter = ("symbol",)
    search_fields = ("symbol",)


@admin.register(FeedSymbol)
class FeedSymbolAdmin(admin.ModelAdmin):
    list_display = ("symbol", "source", "registered_at")
    list_filter = ("source",)
    search_fields = ("symbol",)


@admin.register(MarketClock)
class MarketClockAdmin(admin.ModelAdmin):
    list_display = ("mode", "event_time_ms", "updated_at")
    list_filter = ("mode",)
    search_fields = ("mode",)


@admin.register(StaleWatchState)
class StaleWatchStateAdmin(admin.ModelAdmin):
    list_display = ("paused_by_watch", "stale_symbols", "changed_at_ms")
    list_filter = ("paused_by_watch",)
    search_fields = ("stale_symbols",)
