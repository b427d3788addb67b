"""The screener's functional core: rank symbols by % change and traded volume over a look-back window.

Pure: candles in, ranking out. For each symbol with candles in the window:

* ``pct_change`` = (last close − first open) / first open, the move over the window;
* ``quote_volume`` = Σ close × volume, the traded value (comparable across symbols, unlike base volume);
* ``change_rank`` = place by |pct_change| (1 = biggest mover), ``volume_rank`` = place by quote volume;
* ``score`` = change_rank + volume_rank; the list is ordered by score (lower is better), ties by the larger
  |pct_change|, then by symbol, and the first ``top_n`` form the watch list.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class ScreenCandle:
    timestamp: int
    open: Decimal
    close: Decimal
    volume: Decimal


@dataclass(frozen=True)
class Score:
    symbol: str
    pct_change: Decimal
    quote_volume: Decimal
    change_rank: int
    volume_rank: int
    score: int
    rank: int


def _places(values: Mapping[str, Decimal]) -> dict[str, int]:
    """Competition ranking, largest first: equal values share a place (1, 2, 2, 4)."""
    ordered = sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))
    places: dict[str, int] = {}
    for index, (symbol, value) in enumerate(ordered):
        if index and value == ordered[index - 1][1]:
            places[symbol] = places[ordered[index - 1][0]]
        else:
            places[symbol] = index + 1
    return places


def rank(
    candles: Mapping[str, Sequence[ScreenCandle]],
    *,
    now_ms: int,
    lookback_ms: int,
    top_n: int,
    universe: Iterable[str] | None = None,
) -> list[Score]:
    """The ``top_n`` best scores among ``universe`` (default: every symbol given), using candles with
    ``now_ms - lookback_ms <= timestamp <= now_ms``; symbols without candles in the window are left out."""
    start = now_ms - lookback_ms
    symbols = list(universe) if universe is not None else list(candles)
    change: dict[str, Decimal] = {}
    volume: dict[str, Decimal] = {}
    for symbol in symbols:
        window = sorted(
            (c for c in candles.get(symbol, ()) if start <= c.timestamp <= now_ms), key=lambda c: c.timestamp
        )
        if not window or window[0].open <= 0:
            continue
        change[symbol] = (window[-1].close - window[0].open) / window[0].open
        volume[symbol] = sum((c.close * c.volume for c in window), Decimal(0))
    change_places = _places({s: abs(v) for s, v in change.items()})
    volume_places = _places(volume)
    ordered = sorted(change, key=lambda s: (change_places[s] + volume_places[s], -abs(change[s]), s))
    return [
        Score(
            symbol=s,
            pct_change=change[s],
            quote_volume=volume[s],
            change_rank=change_places[s],
            volume_rank=volume_places[s],
            score=change_places[s] + volume_places[s],
            rank=index + 1,
        )
        for index, s in enumerate(ordered[: max(top_n, 0)])
    ]
