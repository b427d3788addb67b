"""The market clock: wall time when live, the candles' time when replaying.

Everything that asks "what time is it?" for a trading decision (the data-stale watch, the screener, and —
once wired — the risk manager's day boundary, cool-downs and order timestamps) should call
``marketdata.clock.now_ms()`` instead of the system clock, so that a replay behaves as the recorded day did.

Which clock answers:

1. a clock installed with ``use_clock(clock)`` (tests inject a ``ManualClock``; the replay installs its
   ``EventClock`` in its own process);
2. otherwise the shared ``MarketClock`` row: while a replay or simulation runs it is in ``event`` mode and
   holds the latest event time, so Celery workers in other processes follow the replay's time too;
3. otherwise the system clock.

The shared event time advances per stored chunk (per timestamp with ``--speed``/``--lockstep``), so a worker
may see it slightly ahead of a candle still in its queue: a decision *about an event* should use the event's
own timestamp; ``now_ms()`` is for "now" without an event (periodic checks, the screener, housekeeping).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int: ...


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class ManualClock:
    """A clock that only moves when told to (tests)."""

    def __init__(self, start_ms: int = 0) -> None:
        self._now = int(start_ms)

    def now_ms(self) -> int:
        return self._now

    def set(self, epoch_ms: int) -> None:
        self._now = int(epoch_ms)

    def advance(self, seconds: float) -> None:
        self._now += int(seconds * 1000)


class EventClock:
    """Follows event time: the latest event time it has been told about (never goes back)."""

    def __init__(self, start_ms: int = 0) -> None:
        self._now = int(start_ms)

    def now_ms(self) -> int:
        return self._now

    def observe(self, event_ms: int) -> None:
        if event_ms > self._now:
            self._now = int(event_ms)


SYSTEM = SystemClock()
_local = threading.local()


def _installed() -> Clock | None:
    stack = getattr(_local, "stack", None)
    return stack[-1] if stack else None


@contextlib.contextmanager
def use_clock(clock: Clock) -> Iterator[Clock]:
    """Make ``clock`` the answer of ``now_ms()`` in this thread for the duration of the block."""
    stack = _local.__dict__.setdefault("stack", [])
    stack.append(clock)
    try:
        yield clock
    finally:
        stack.pop()


def current() -> Clock:
    installed = _installed()
    if installed is not None:
        return installed
    shared = shared_event_time()
    if shared is not None:
        return EventClock(shared)
    return SYSTEM


def now_ms() -> int:
    return current().now_ms()


# --- the shared event time (a row, so that every process follows a replay) ------------------------------


def shared_event_time() -> int | None:
    """The replay's event time when a replay/simulation in event-time mode is running, else None."""
    from django.conf import settings

    if getattr(settings, "MARKET_CLOCK", "auto") == "system":
        return None
    from .models import MarketClock

    try:
        row = MarketClock.objects.filter(pk=1).values_list("mode", "event_time_ms").first()
    except Exception:  # no table yet (before migrate): fall back to the system clock
        return None
    if row is None or row[0] != MarketClock.Mode.EVENT:
        return None
    return row[1]


def decision_time_ms(event_ms: int) -> int:
    """The market clock at a decision on a candle of ``event_ms``: wall time once a live feed drives the market
    (it sets the shared clock to the system's, ``release_shared_event_time``), so that a candle decided late — a
    backlog, a backfill after an outage — is judged as old as it is; otherwise (a replay, a simulation, a test
    clock, no feed yet) the candle's own time, as the backtest decides: the newest candle seen."""
    if _installed() is not None:
        return event_ms
    from .models import MarketClock

    mode = MarketClock.objects.filter(pk=1).values_list("mode", flat=True).first()
    return max(event_ms, SYSTEM.now_ms()) if mode == MarketClock.Mode.SYSTEM else event_ms


def set_shared_event_time(event_ms: int, *, note: str | None = None) -> None:
    """The market's time is ``event_ms``; ``note`` (when given) says what drives it, for the page."""
    from .models import MarketClock

    defaults = {"mode": MarketClock.Mode.EVENT, "event_time_ms": event_ms}
    if note is not None:
        defaults["note"] = note[:200]
    MarketClock.objects.update_or_create(pk=1, defaults=defaults)


def clock_note() -> str:
    """What drives the market clock, in words: the simulation's pace, a replay, or the system clock."""
    from .models import MarketClock

    try:
        row = MarketClock.objects.filter(pk=1).values_list("mode", "note").first()
    except Exception:  # no table yet
        return "system clock"
    if row is None or row[0] != MarketClock.Mode.EVENT:
        return "system clock (live)"
    return row[1] or "event time of the candles being replayed"


def release_shared_event_time() -> None:
    """Back to the system clock (a live feed starts, or a replay that should not leave its time behind)."""
    from .models import MarketClock

    MarketClock.objects.update_or_create(pk=1, defaults={"mode": MarketClock.Mode.SYSTEM, "note": ""})
