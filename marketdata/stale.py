"""The data-stale watch's market side (risk layer 3): no market data for a watched symbol for DATA_STALE_TIMEOUT_SEC
→ PAUSE.

``decide`` is the functional core (pure: the last-seen times, the watched symbols, the time, the timeout and
whether the watch itself holds a pause in, a decision out); the watched symbols and their last-seen times are read
here too. The action — pausing trading, resuming it — is the risk layer's: ``risk.data_stale.StaleWatch``.

Time comes from ``marketdata.clock`` (or is passed in), so tests and replays control it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

ACTOR = "data_stale_watch"
RESUME_REASON = "market data fresh again"
RECOVERED_MESSAGE = "Market data fresh again; trading resumed"


def handed_back(new_state: str, stale: Iterable[str]) -> tuple[str, ...]:
    """A person changed the trading state (halt, release): the state is theirs, so the watch no longer holds a pause
    of its own (``paused_by_watch`` is cleared by the caller) and its next check pauses on data still or newly stale.
    Returns the stale symbols the watch keeps: none after a release (to ACTIVE), so the pause it makes again comes
    with its DATA_STALE alert; all of them after a halt (already said, nothing is ordered while HALTED)."""
    return () if new_state == "ACTIVE" else tuple(stale)


def pause_reason(stale: Iterable[str]) -> str:
    return f"data stale: {', '.join(stale)}"


def stale_message(newly_stale: Iterable[str], timeout_ms: int) -> str:
    """The DATA_STALE alert: the symbols that just went stale (the live watch's and the backtest's words)."""
    return f"No market data for {', '.join(newly_stale)} for more than {timeout_ms // 1000}s; new orders paused"


@dataclass(frozen=True)
class StaleDecision:
    stale: tuple[str, ...]  # watched symbols without data for longer than the timeout, sorted
    action: str | None  # "pause", "resume" or None
    newly_stale: tuple[str, ...] = ()


@dataclass
class CandleSeries:
    """What a watch over recorded candles (a replay, the backtest) expects of a symbol: a candle every
    ``interval_ms``, until its data ends at ``last_ms`` (None: not known yet)."""

    interval_ms: int
    last_ms: int | None = None
    files_left: int = 1  # a replay's files of the symbol still being read
    ended_ms: int | None = None  # the latest last candle of its files read to the end so far


def stale_symbols(
    last_seen: Mapping[str, int | None],
    watched: Iterable[str],
    now_ms: int,
    timeout_ms: int,
    candles: Mapping[str, CandleSeries] | None = None,
) -> tuple[str, ...]:
    """Watched symbols whose last data is more than ``timeout_ms`` before ``now_ms`` (never seen = stale).

    ``candles``: the watch runs on recorded candles' time, where data comes a candle at a time: a symbol is
    stale only when its next candle is due and missing (a 5m symbol beside 1m ones is not stale between its
    candles), and it is expected only from its first candle to its last (files that cover different periods)."""
    out = []
    for symbol in watched:
        seen = last_seen.get(symbol)
        if candles is None:
            if seen is None or now_ms - seen > timeout_ms:
                out.append(symbol)
            continue
        series = candles.get(symbol)
        if seen is None or series is None or (series.last_ms is not None and now_ms > series.last_ms):
            continue
        age = now_ms - seen
        if age > timeout_ms and age >= series.interval_ms:
            out.append(symbol)
    return tuple(sorted(set(out)))


def stale_onsets(
    last_seen: Mapping[str, int | None],
    watched: Iterable[str],
    after_ms: int,
    before_ms: int,
    timeout_ms: int,
    candles: Mapping[str, CandleSeries],
) -> list[int]:
    """The times strictly between ``after_ms`` and ``before_ms`` at which a watched symbol's data turns stale while no
    candle comes (``stale_symbols`` over recorded candles: its age exceeds the timeout and its next candle is due),
    in order. A replay's or a backtest's market time jumps from one candle time to the next; live, the beat would
    have run in between and found the data stale at these times. A watch over recorded candles checks at each of
    them before it moves on (a gap in every file at once, or a timeout that ends between two candle times)."""
    times = set()
    for symbol in watched:
        seen, series = last_seen.get(symbol), candles.get(symbol)
        if seen is None or series is None:
            continue
        at = seen + max(timeout_ms + 1, series.interval_ms)  # whole ms: age > timeout from timeout + 1 on
        if after_ms < at < before_ms and (series.last_ms is None or at <= series.last_ms):
            times.add(at)
    return sorted(times)


STALE, ENDED = "is stale", "has ended"


def without_data(
    last_seen: Mapping[str, int | None],
    watched: Iterable[str],
    now_ms: int,
    timeout_ms: int,
    candles: Mapping[str, CandleSeries] | None = None,
) -> dict[str, str]:
    """The watched symbols that can give no price at ``now_ms``, with why (``STALE``, ``ENDED``): the stale ones
    (``stale_symbols``), and over recorded candles those past their last candle. Their waiting orders expire
    (``risk.desk.Desk.expire``); at the end of a replay or backtest, every symbol's data has ended."""
    found = dict.fromkeys(stale_symbols(last_seen, watched, now_ms, timeout_ms, candles), STALE)
    for symbol in watched if candles is not None else ():
        series = candles.get(symbol)
        if series is not None and series.last_ms is not None and now_ms > series.last_ms:
            found.setdefault(symbol, ENDED)
    return found


def decide(
    last_seen: Mapping[str, int | None],
    watched: Iterable[str],
    now_ms: int,
    timeout_ms: int,
    *,
    paused_by_watch: bool,
    previously_stale: Iterable[str] = (),
    candles: Mapping[str, CandleSeries] | None = None,
) -> StaleDecision:
    stale = stale_symbols(last_seen, watched, now_ms, timeout_ms, candles)
    newly = tuple(s for s in stale if s not in set(previously_stale))
    if stale and not paused_by_watch:
        return StaleDecision(stale, "pause", newly)
    if not stale and paused_by_watch:
        return StaleDecision(stale, "resume", newly)
    return StaleDecision(stale, None, newly)


def watched_symbols() -> list[str]:
    """The screener's current list, else SYMBOL_WHITELIST, else the symbols a feed has reported on."""
    from django.conf import settings

    from .models import DataFreshness, FeedSymbol, WatchList

    feed = list(FeedSymbol.objects.values_list("symbol", flat=True))
    if feed:
        return sorted(s for s in feed if not settings.SYMBOL_WHITELIST or s in settings.SYMBOL_WHITELIST)
    latest = WatchList.objects.order_by("-as_of_ms", "-id").first()
    if latest is not None:
        return latest.symbols()
    if settings.SYMBOL_WHITELIST:
        return list(settings.SYMBOL_WHITELIST)
    return sorted(DataFreshness.objects.values_list("symbol", flat=True))


def last_seen_from_store(symbols: Iterable[str]) -> dict[str, int]:
    """Latest data time per symbol: the freshness mark the feed keeps, or the newest stored candle."""
    from django.db.models import Max

    from .models import Candle, DataFreshness

    symbols = list(symbols)
    seen: dict[str, int] = dict(
        Candle.objects.filter(symbol__in=symbols)
        .values("symbol")
        .annotate(ts=Max("timestamp"))
        .values_list("symbol", "ts")
    )
    for symbol, ts in DataFreshness.objects.filter(symbol__in=symbols).values_list("symbol", "last_seen_ms"):
        seen[symbol] = max(ts, seen.get(symbol, ts))
    return seen


def touch(symbol: str, seen_ms: int) -> None:
    """The feed saw data for ``symbol`` at market time ``seen_ms`` (an update of the running candle counts)."""
    from .models import DataFreshness

    updated = DataFreshness.objects.filter(symbol=symbol, last_seen_ms__lt=seen_ms).update(last_seen_ms=seen_ms)
    if not updated:
        DataFreshness.objects.get_or_create(symbol=symbol, defaults={"last_seen_ms": seen_ms})
