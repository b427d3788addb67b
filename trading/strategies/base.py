"""The strategy interface: plain objects fed one candle at a time, no ORM, Redis or clock inside.

A strategy is a subclass of :class:`Strategy` with

* ``name`` — how the ``STRATEGY`` setting and the registry find it;
* ``params`` — typed parameters (:class:`Param`) with a default and an allowed range;
  a bad value raises ``ValueError`` naming the parameter and its range;
* ``warmup`` — the number of candles up to and including the first one that can
  produce a signal (no signal is ever emitted on candles 1 … warmup − 1);
* ``on_candle(candle) -> Signal | None`` — fed candles in timestamp order.

Defining the subclass registers it (``REGISTRY``); the package imports every module
in ``trading/strategies/`` so adding a strategy is adding one file. The live signal
task and the backtest feed the same objects the same candles in the same order, so
they make the same decisions. Strategy objects pickle (the live path caches them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import isfinite
from typing import ClassVar

from ground.numbers import number_rule, typed_number
from marketdata.candle import Candle

REGISTRY: dict[str, type[Strategy]] = {}


@dataclass(frozen=True, slots=True)
class Signal:
    side: str  # "BUY" or "SELL"
    confidence: float  # 0..1
    reason: str
    price: float
    timestamp: int
    components: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Param:
    """A typed strategy parameter with its default and allowed range (inclusive)."""

    default: float
    minimum: float
    maximum: float
    integer: bool = True
    help: str = ""

    def describe(self) -> str:
        kind = "integer" if self.integer else "number"
        return f"{kind} {_number(self.minimum)}–{_number(self.maximum)}, default {_number(self.default)}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class Strategy:
    """Base class. Subclasses set ``name`` and ``params`` and implement ``warmup`` and ``on_candle``.

    ``validate`` runs after the parameters are checked; it holds cross-parameter rules
    and is where a subclass builds its indicators (``self.values`` holds the parameters).
    """

    name: ClassVar[str] = ""
    params: ClassVar[dict[str, Param]] = {}
    # Bump when a change alters the state a strategy carries between candles (cached live state is keyed by it).
    version: ClassVar[int] = 2  # 2: the indicators keep float copies of their periods

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.name:
            return
        existing = REGISTRY.get(cls.name)
        if existing is not None and (existing.__module__, existing.__qualname__) != (cls.__module__, cls.__qualname__):
            raise TypeError(f"strategy name {cls.name!r} is used by both {existing.__module__} and {cls.__module__}")
        REGISTRY[cls.name] = cls

    def __init__(self, **overrides: float) -> None:
        unknown = set(overrides) - set(self.params)
        if unknown:
            raise ValueError(
                f"{self.name}: unknown parameter(s) {', '.join(sorted(unknown))}; known: {', '.join(self.params)}"
            )
        self.values: dict[str, float] = {}
        for key, spec in self.params.items():
            value = overrides.get(key, spec.default)
            try:  # a text (``--param fast=10``, ``--strategy sma_cross:fast=10``) by the rule for typed numbers
                number = float(typed_number(value, negative=spec.minimum < 0) if isinstance(value, str) else value)
            except (TypeError, ValueError):
                said = f": {number_rule(negative=spec.minimum < 0)}" if isinstance(value, str) else ""
                raise ValueError(
                    f"{self.name}: parameter {key}={value!r} is not a number{said} (allowed: {spec.describe()})"
                ) from None
            if not isfinite(number):
                raise ValueError(f"{self.name}: parameter {key}={value!r} is not a finite number ({spec.describe()})")
            if spec.integer and number != int(number):
                raise ValueError(f"{self.name}: parameter {key}={value!r} must be a whole number ({spec.describe()})")
            if not spec.minimum <= number <= spec.maximum:
                raise ValueError(
                    f"{self.name}: parameter {key}={value!r} is out of range "
                    f"({_number(spec.minimum)}–{_number(spec.maximum)})"
                )
            self.values[key] = int(number) if spec.integer else number
        self.validate()

    def validate(self) -> None:
        """Cross-parameter checks (raise ValueError with a clear message) and building the indicators."""

    @property
    def key(self) -> str:
        """Name, state version and every parameter value: identifies what this object computes."""
        values = ",".join(f"{k}={_number(v)}" for k, v in sorted(self.values.items()))
        return f"{self.name}.v{self.version}({values})"

    def for_series(self, symbol: str, interval: str) -> Strategy:
        """This strategy for one symbol's candles (the backtest and the live path call it once per series): a
        strategy that depends on the symbol binds to it here; the others are the same object."""
        return self

    @property
    def warmup(self) -> int:
        """Candles up to and including the first one that can produce a signal."""
        raise NotImplementedError

    def on_candle(self, candle: Candle) -> Signal | None:
        raise NotImplementedError

    def run(self, candles) -> list[Signal]:
        """Feed candles in order; the signals emitted (the backtest's inner loop)."""
        on_candle = self.on_candle
        return [signal for signal in map(on_candle, candles) if signal is not None]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.key}>"
