"""Risk parameters of SPEC §4: names, defaults, allowed ranges, and how env values seed them.

Pure module (no Django import) so that settings, the admin form, the API and
the backtest all validate against the same table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from ground.amounts import percent, plain
from ground.numbers import typed_number


@dataclass(frozen=True)
class ParameterSpec:
    name: str
    default: Decimal
    minimum: Decimal
    maximum: Decimal
    description: str
    integer: bool = False

    def describe_range(self) -> str:
        return f"{self.minimum}–{self.maximum}"

    def check(self, value: object) -> Decimal:
        """Return ``value`` as a Decimal, or raise ValueError naming the parameter and range. A text (what a person
        typed: the environment, a command's ``--param``, an API string) follows ``ground.numbers``' rule."""
        try:
            number = typed_number(value) if isinstance(value, str) else Decimal(str(value))
        except InvalidOperation:
            raise ValueError(f"{self.name}: {value!r} is not a number (allowed {self.describe_range()})") from None
        except ValueError as error:
            raise ValueError(f"{self.name}: {error} (allowed {self.describe_range()})") from None
        if not number.is_finite():
            raise ValueError(f"{self.name}: {value!r} is not a finite number (allowed {self.describe_range()})")
        if self.integer and number != number.to_integral_value():
            raise ValueError(f"{self.name}: {value!r} must be a whole number (allowed {self.describe_range()})")
        if not self.minimum <= number <= self.maximum:
            raise ValueError(f"{self.name}: {value} is out of range (allowed {self.describe_range()})")
        return number


def _spec(
    name: str, default: str, minimum: str, maximum: str, description: str, integer: bool = False
) -> ParameterSpec:
    return ParameterSpec(name, Decimal(default), Decimal(minimum), Decimal(maximum), description, integer)


PARAMETER_SPECS: dict[str, ParameterSpec] = {
    spec.name: spec
    for spec in (
        _spec("MAX_DAILY_DRAWDOWN_PCT", "0.05", "0.01", "0.20", "Daily drawdown that halts trading"),
        _spec("MAX_SLIPPAGE_PCT", "0.01", "0.001", "0.05", "Expected slippage that trips the circuit breaker"),
        _spec(
            "MAX_SPREAD_MULTIPLIER",
            "5.0",
            "2",
            "10",
            "Spread against its recent average that trips the circuit breaker",
        ),
        _spec(
            "DATA_STALE_TIMEOUT_SEC",
            "30",
            "10",
            "120",
            "Seconds without market data before trading pauses",
            integer=True,
        ),
        _spec("MAX_EXPOSURE_PCT", "0.50", "0.10", "1.00", "Total exposure above which new entries are blocked"),
        _spec("MAX_POSITION_PCT", "0.10", "0.01", "0.25", "Largest single position as a share of equity"),
        _spec("STOP_LOSS_PCT", "0.02", "0.005", "0.10", "Loss per trade that triggers an automatic exit"),
        _spec("MAX_ORDERS_PER_MINUTE", "30", "1", "600", "Order throttle", integer=True),
        _spec("COOLDOWN_AFTER_STOP_MIN", "15", "0", "1440", "Minutes a symbol rests after a stop-loss", integer=True),
    )
}


def parameter_text(name: str, value) -> str:
    """A parameter as people read it: its exact value, and a ``_PCT`` one (a fraction, SPEC §4: 0.05 = 5 %) in
    percent too: ``0.05 (5.00 %)`` (the admin, ``risk_status``)."""
    return f"{plain(value)} ({percent(value)})" if name.endswith("_PCT") else plain(value)


@dataclass(frozen=True)
class SeededValue:
    value: Decimal
    source: str  # "env" or "default"
    warning: str | None = None


def seed_from_env(environ: Mapping[str, str]) -> dict[str, SeededValue]:
    """Read every risk parameter from ``environ``; out-of-range or malformed values fall back to the default.

    The returned warning names the parameter, the rejected value and the default used instead.
    """
    seeded: dict[str, SeededValue] = {}
    for name, spec in PARAMETER_SPECS.items():
        raw = environ.get(name)
        if raw is None or raw.strip() == "":
            seeded[name] = SeededValue(spec.default, "default")
            continue
        try:
            seeded[name] = SeededValue(spec.check(raw), "env")
        except ValueError as error:
            seeded[name] = SeededValue(spec.default, "default", f"{error}; using the default {spec.default}")
    return seeded
