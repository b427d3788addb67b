"""The data-stale watch's action (risk layer 3): no market data for a watched symbol for DATA_STALE_TIMEOUT_SEC →
PAUSE.

``StaleWatch`` is the shell around ``marketdata.stale.decide``: it reads the state, pauses through
``risk.state.change_state`` with a DATA_STALE WARNING alert, and when every watched symbol is fresh again resumes —
but only a pause it made itself (never a HALT or another layer's pause).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import Decimal

from marketdata.stale import (
    ACTOR,
    ENDED,
    RECOVERED_MESSAGE,
    RESUME_REASON,
    CandleSeries,
    StaleDecision,
    decide,
    last_seen_from_store,
    pause_reason,
    stale_message,
    stale_onsets,
    watched_symbols,
    without_data,
)


def timeout_ms() -> int:
    """DATA_STALE_TIMEOUT_SEC from the live risk parameters (admin-editable), else the env seed / default."""
    try:
        from .models import RiskParameters

        return int(Decimal(RiskParameters.load().data_stale_timeout_sec) * 1000)
    except Exception:
        from django.conf import settings

        return int(settings.RISK_PARAMETER_SEEDS["DATA_STALE_TIMEOUT_SEC"].value * 1000)


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
        from marketdata import clock

        return self.check_at(clock.now_ms() if now is None else now)

    def check_at(self, now_ms: int) -> StaleDecision:
        from marketdata.models import StaleWatchState

        watched = self._watched if self._watched is not None else watched_symbols()
        last_seen = self._last_seen if self._in_memory else last_seen_from_store(watched)
        timeout = self._timeout if self._timeout is not None else timeout_ms()
        if self._timeout is None and self._in_memory:
            self._timeout = timeout  # a replay reads the parameter once
        if self._state is None or not self._in_memory:
            self._state = StaleWatchState.load()
        state = self._state
        decision = self._decide(last_seen, watched, now_ms, timeout, state)
        if decision.action is not None or list(decision.stale) != list(state.stale_symbols):
            decision = self._act(last_seen, watched, now_ms, timeout)
        self._expire(without_data(last_seen, watched, now_ms, timeout, self._candles), now_ms)
        return decision

    def _decide(self, last_seen, watched, now_ms: int, timeout: int, state) -> StaleDecision:
        return decide(
            last_seen,
            watched,
            now_ms,
            timeout,
            paused_by_watch=state.paused_by_watch,
            previously_stale=state.stale_symbols,
            candles=self._candles,
        )

    def onsets(self, after_ms: int, before_ms: int) -> list[int]:
        """A replay between two candle times: when, in between, the beat would have found data stale
        (``stale_onsets``); the replay checks at each of them (``check_at``) before the later time's candles."""
        if self._candles is None or self._watched is None:
            return []
        timeout = self._timeout if self._timeout is not None else timeout_ms()
        return stale_onsets(self._last_seen, self._watched, after_ms, before_ms, timeout, self._candles)

    def reload(self) -> None:
        """A replay's watch reads its stored state again at the next check (a person's command changed it)."""
        self._state = None

    def holds_pause(self) -> bool:
        """Whether the watch holds a pause of its own, as last checked (a replay's in-memory watch)."""
        return self._state is not None and self._state.paused_by_watch

    def fresh_data(self, now_ms: int, arrived: Iterable[tuple[str, int]]) -> None:
        """A replay's candles of one time, (symbol, known at) each, before they go out: the watch's own pause ends
        as soon as every watched symbol is fresh again — on the new market data, before any decision on it (SPEC
        §4 layer 3, "resumes on fresh market_data"); a pause or staleness found is left to the next ``check_at``."""
        for symbol, known in arrived:
            self.seen(symbol, known)
        if not self.holds_pause():
            return
        timeout = self._timeout if self._timeout is not None else timeout_ms()
        if self._decide(self._last_seen, self._watched, now_ms, timeout, self._state).action == "resume":
            self._act(self._last_seen, self._watched, now_ms, timeout)

    def data_ended(self, now_ms: int, symbols: Iterable[str]) -> None:
        """A replay is over: the data of ``symbols`` has ended, and every order still waiting expires — also one of
        a symbol outside the replay (a close of a position held from before, decided at its last price): this
        replay brings it no price either. A risk exit among them is decided again when a price comes
        (``Desk.expire``)."""
        from execution.models import Order

        waiting = Order.objects.filter(status=Order.Status.PENDING).values_list("symbol", flat=True).distinct()
        self._expire(dict.fromkeys(sorted({*symbols, *waiting}), ENDED), now_ms)

    def _expire(self, symbols: dict[str, str], now_ms: int) -> None:
        if symbols and self._on_without_data is not None:
            self._on_without_data(symbols, now_ms)

    def _act(self, last_seen, watched, now_ms: int, timeout: int) -> StaleDecision:
        from django.db import transaction

        from marketdata.models import StaleWatchState

        from .alerts import raise_alert
        from .models import TradingState
        from .state import change_state

        with transaction.atomic():
            state = StaleWatchState.load(for_update=True)
            trading = TradingState.load(for_update=True)
            # decide again under the lock: another checker (beat, a replay) may have acted meanwhile
            decision = self._decide(last_seen, watched, now_ms, timeout, state)
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
