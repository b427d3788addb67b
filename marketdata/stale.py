"""The data-stale watch (risk layer 3): no market data for a watched symbol for DATA_STALE_TIMEOUT_SEC → PAUSE.

``decide`` is the functional core (pure: the last-seen times, the watched symbols, the time, the timeout and
whether the watch itself holds a pause in, a decision out). ``StaleWatch`` is the shell: it reads the state,
pauses through ``risk.state.change_state`` with a DATA_STALE WARNING alert, and when every watched symbol is
fresh again resumes — but only a pause it made itself (never a HALT or another layer's pause).

Time comes from ``marketdata.clock`` (or is passed in), so tests and replays control it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

ACTOR = "data_stale_watch"
RESUME_REASON = "market data fresh again"
RECOVERED_MESSAGE = "Market data fresh again; trading resumed"


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


def timeout_ms() -> int:
    """DATA_STALE_TIMEOUT_SEC from the live risk parameters (admin-editable), else the env seed / default."""
    try:
        from risk.models import RiskParameters

        return int(Decimal(RiskParameters.load().data_stale_timeout_sec) * 1000)
    except Exception:
        from django.conf import settings

        return int(settings.RISK_PARAMETER_SEEDS["DATA_STALE_TIMEOUT_SEC"].value * 1000)


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


class StaleWatch:
    """The shell. ``check()`` for live use (beat task); a replay feeds ``seen()`` and calls ``check_at()``."""

    def __init__(
        self,
        watched: Iterable[str] | None = None,
        timeout: int | None = None,
        on_without_data: Callable[[dict[str, str], int], None] | None = None,
    ) -> None:
        """``on_without_data(symbols, now_ms)``: told at each check of the symbols without data (``without_data``:
        stale, or a replay's data of them over) — the risk layer's ``expire_waiting_orders``, passed in by the
        process that runs the watch (marketdata does not call up into risk)."""
        self._on_without_data = on_without_data
        self._watched = list(watched) if watched is not None else None
        self._timeout = timeout
        self._last_seen: dict[str, int] = {}
        self._in_memory = watched is not None
        self._state = None
        self._candles: dict[str, CandleSeries] | None = None

    def expect_candles(self, symbol: str, interval_ms: int) -> None:
        """A replay: ``symbol`` comes as candles of ``interval_ms`` (its shortest, if several files)."""
        if self._candles is None:
            self._candles = {}
        series = self._candles.get(symbol)
        if series is None:
            self._candles[symbol] = CandleSeries(interval_ms)
        else:
            series.interval_ms = min(series.interval_ms, interval_ms)
            series.files_left += 1

    def candles_end(self, symbol: str, last_ms: int) -> None:
        """A replay's file of ``symbol`` has no candle after ``last_ms``: with its last file, the symbol's data ends."""
        series = self._candles[symbol]
        series.files_left -= 1
        series.ended_ms = last_ms if series.ended_ms is None else max(series.ended_ms, last_ms)
        if series.files_left == 0:
            series.last_ms = series.ended_ms

    def seen(self, symbol: str, ts: int) -> None:
        if ts > self._last_seen.get(symbol, -1):
            self._last_seen[symbol] = ts

    def check(self, now: int | None = None) -> StaleDecision:
        from . import clock

        return self.check_at(clock.now_ms() if now is None else now)

    def check_at(self, now_ms: int) -> StaleDecision:
        from .models import StaleWatchState

        watched = self._watched if self._watched is not None else watched_symbols()
        last_seen = self._last_seen if self._in_memory else last_seen_from_store(watched)
        timeout = self._timeout if self._timeout is not None else timeout_ms()
        if self._timeout is None and self._in_memory:
            self._timeout = timeout  # a replay reads the parameter once
        if self._state is None or not self._in_memory:
            self._state = StaleWatchState.load()
        state = self._state
        decision = decide(
            last_seen,
            watched,
            now_ms,
            timeout,
            paused_by_watch=state.paused_by_watch,
            previously_stale=state.stale_symbols,
            candles=self._candles,
        )
        if decision.action is not None or list(decision.stale) != list(state.stale_symbols):
            decision = self._act(last_seen, watched, now_ms, timeout)
        self._expire(without_data(last_seen, watched, now_ms, timeout, self._candles), now_ms)
        return decision

    def data_ended(self, now_ms: int, symbols: Iterable[str]) -> None:
        """A replay is over: the data of ``symbols`` has ended, and their orders still waiting expire."""
        self._expire(dict.fromkeys(symbols, ENDED), now_ms)

    def _expire(self, symbols: dict[str, str], now_ms: int) -> None:
        if symbols and self._on_without_data is not None:
            self._on_without_data(symbols, now_ms)

    def _act(self, last_seen, watched, now_ms: int, timeout: int) -> StaleDecision:
        from django.db import transaction

        from risk.alerts import raise_alert
        from risk.models import TradingState
        from risk.state import change_state

        from .models import StaleWatchState

        with transaction.atomic():
            state = StaleWatchState.load(for_update=True)
            trading = TradingState.load(for_update=True)
            # decide again under the lock: another checker (beat, a replay) may have acted meanwhile
            decision = decide(
                last_seen,
                watched,
                now_ms,
                timeout,
                paused_by_watch=state.paused_by_watch,
                previously_stale=state.stale_symbols,
                candles=self._candles,
            )
            if decision.newly_stale:
                raise_alert(
                    "WARNING",
                    "DATA_STALE",
                    stale_message(decision.newly_stale, timeout),
                    timestamp=now_ms,
                    **({"symbol": decision.newly_stale[0]} if len(decision.newly_stale) == 1 else {}),
                )
            if decision.action == "pause":
                if trading.state == TradingState.State.ACTIVE:
                    change_state("PAUSED", pause_reason(decision.stale), ACTOR, timestamp=now_ms)
                    state.paused_by_watch = True
                elif trading.state == TradingState.State.PAUSED and trading.changed_by == ACTOR:
                    state.paused_by_watch = True
            elif decision.action == "resume":
                if trading.state == TradingState.State.PAUSED and trading.changed_by == ACTOR:
                    change_state("ACTIVE", RESUME_REASON, ACTOR, timestamp=now_ms)
                    raise_alert("INFO", "DATA_RECOVERED", RECOVERED_MESSAGE, timestamp=now_ms)
                state.paused_by_watch = False
            state.stale_symbols = list(decision.stale)
            state.changed_at_ms = now_ms
            state.save()
        self._state = state
        return decision
