from __future__ import annotations

from django.db import models
from django.db.models import BigIntegerField, Case, F, Value, When
from django.db.models.functions import Cast, Length, Substr

from ground.amounts import iso_utc, price, quote_of
from ground.fields import MoneyField

# An interval's milliseconds in SQL, as ``marketdata.validation.interval_ms`` reads "<number><s|m|h|d>".
INTERVAL_MS_SQL = Cast(Substr("interval", 1, Length("interval") - 1), BigIntegerField()) * Case(
    When(interval__endswith="s", then=Value(1_000)),
    When(interval__endswith="m", then=Value(60_000)),
    When(interval__endswith="h", then=Value(3_600_000)),
    When(interval__endswith="d", then=Value(86_400_000)),
    output_field=BigIntegerField(),
)


class Candle(models.Model):
    """One OHLCV candle; timestamp is the open time in epoch milliseconds (UTC). A candle is known at its close,
    ``known_at`` (open time + interval, computed by the database): every decision looks up the candles known at its
    time, so a 5m candle's close is not seen by a 1m decision before it has closed."""

    symbol = models.CharField(max_length=41)
    interval = models.CharField(max_length=8)
    timestamp = models.BigIntegerField()
    known_at = models.GeneratedField(
        expression=F("timestamp") + INTERVAL_MS_SQL, output_field=BigIntegerField(), db_persist=True
    )
    open = MoneyField()
    high = MoneyField()
    low = MoneyField()
    close = MoneyField()
    volume = MoneyField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["symbol", "interval", "timestamp"], name="candle_unique_symbol_interval_ts")
        ]
        # "The last candle of a symbol at or before t" (prices, snapshots, fills) reads across intervals: without
        # this index it sorts every stored candle of the symbol.
        # Prices and market snapshots at a decision time read "the last candle known by t": by its close.
        indexes = [
            models.Index(fields=["symbol", "timestamp"], name="candle_symbol_ts"),
            models.Index(fields=["symbol", "known_at"], name="candle_symbol_known"),
        ]
        ordering = ["symbol", "interval", "timestamp"]

    def __str__(self) -> str:
        close = price(self.close, quote_of(self.symbol))
        return f"{self.symbol} {self.interval} @ {iso_utc(self.timestamp)} close {close}"


class CandleSeries(models.Model):
    """The revision of one symbol's candles of one interval, kept by database triggers on the candle table
    (migration 0004), whoever writes the candles.

    ``revision`` goes up whenever the series' past changes: a candle stored at or before its ``newest`` one (a late
    or back-filled candle), or any candle updated or deleted (those bump every series). Appending a newer candle
    leaves it alone. So two reads that see the same revision see the same candles up to the newest the first one
    saw, and the strategy cache can check a cached state against it in one row instead of counting the history.

    The insert trigger locks the series row after the candles are inserted, in their transaction, so writers of a
    series commit in the order they take that lock: a candle a concurrent writer stores behind a newer one that
    committed first is seen as late.
    """

    symbol = models.CharField(max_length=41)
    interval = models.CharField(max_length=8)
    newest = models.BigIntegerField(null=True, help_text="timestamp of the newest stored candle")
    revision = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["symbol", "interval"], name="candleseries_unique")]
        verbose_name = "candle series"
        verbose_name_plural = "candle series"

    def __str__(self) -> str:
        return f"{self.symbol} {self.interval} r{self.revision}"


class MarketClock(models.Model):
    """The shared market clock (one row): ``event`` while a replay/simulation drives time, else ``system``."""

    class Mode(models.TextChoices):
        SYSTEM = "system"
        EVENT = "event"

    mode = models.CharField(max_length=8, choices=Mode.choices, default=Mode.SYSTEM)
    event_time_ms = models.BigIntegerField(null=True, blank=True)
    note = models.CharField(max_length=200, blank=True, default="", help_text="what drives the clock, for the page")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = verbose_name_plural = "market clock"  # one row

    def __str__(self) -> str:
        return f"{self.mode} clock @ {iso_utc(self.event_time_ms)}"


class FeedSymbol(models.Model):
    """A symbol a replay or the simulated market is driving: tradable without a screener list."""

    class Source(models.TextChoices):
        REPLAY = "replay"
        SIM = "sim"

    symbol = models.CharField(max_length=41, unique=True)
    source = models.CharField(max_length=8, choices=Source.choices)
    registered_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.symbol} ({self.source})"


class WatchList(models.Model):
    """One screener run: the TOP_N symbols by % change and volume over the look-back window."""

    as_of_ms = models.BigIntegerField(help_text="market time of the ranking, epoch ms")
    lookback_minutes = models.PositiveIntegerField()
    top_n = models.PositiveIntegerField()
    interval = models.CharField(max_length=8)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-as_of_ms", "-id"]
        get_latest_by = ["as_of_ms", "id"]

    def symbols(self) -> list[str]:
        return list(self.entries.order_by("rank").values_list("symbol", flat=True))

    def __str__(self) -> str:
        return f"watch list @ {iso_utc(self.as_of_ms)}"


class WatchListEntry(models.Model):
    watchlist = models.ForeignKey(WatchList, related_name="entries", on_delete=models.CASCADE)
    rank = models.PositiveIntegerField()
    symbol = models.CharField(max_length=41)
    pct_change = models.DecimalField(max_digits=30, decimal_places=12)
    quote_volume = MoneyField()
    score = models.DecimalField(max_digits=30, decimal_places=12)

    class Meta:
        ordering = ["watchlist", "rank"]
        verbose_name_plural = "watch list entries"
        constraints = [models.UniqueConstraint(fields=["watchlist", "symbol"], name="watchlist_entry_unique_symbol")]


class DataFreshness(models.Model):
    """When data for a symbol was last seen (market time, epoch ms); the feed touches it on every update."""

    symbol = models.CharField(max_length=41, unique=True)
    last_seen_ms = models.BigIntegerField()

    class Meta:
        verbose_name = "data freshness"
        verbose_name_plural = "data freshness"

    def __str__(self) -> str:
        return f"{self.symbol} seen @ {iso_utc(self.last_seen_ms)}"


class StaleWatchState(models.Model):
    """The data-stale watch's memory (one row): did *it* pause trading, and which symbols are stale."""

    paused_by_watch = models.BooleanField(default=False)
    stale_symbols = models.JSONField(default=list, blank=True)
    changed_at_ms = models.BigIntegerField(null=True, blank=True)

    class Meta:
        verbose_name = verbose_name_plural = "stale-data watch"  # one row

    @classmethod
    def load(cls, *, for_update: bool = False) -> StaleWatchState:
        manager = cls.objects.select_for_update() if for_update else cls.objects
        state = manager.filter(pk=1).first()
        if state is None:
            cls.objects.get_or_create(pk=1)
            state = manager.get(pk=1)
        return state
