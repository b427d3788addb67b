"""Search spaces: ``--space NAME=LOW:HIGH[:int|:float|:log]`` parsed and checked against the declared ranges (the
strategy's ``Param`` table, SPEC §4's ``PARAMETER_SPECS``, the backtest's POSITION_SIZE_PCT bounds) before anything
runs. Pure: no Django, no Optuna."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from ground.numbers import typed_number
from risk.parameters import PARAMETER_SPECS
from trading.strategies import REGISTRY

SIZING = "POSITION_SIZE_PCT"
SIZING_RANGE = (Decimal("0.001"), Decimal("1"))  # as `manage.py backtest --param POSITION_SIZE_PCT=…` accepts
KINDS = ("int", "float", "log")


class SpaceError(ValueError):
    """A space that cannot be searched; the message names the parameter and its allowed range."""


@dataclass(frozen=True)
class Dimension:
    """One searched parameter: ``target`` is "strategy", "risk" (a SPEC §4 parameter) or "sizing"."""

    name: str
    low: float
    high: float
    integer: bool
    log: bool
    target: str

    def as_dict(self) -> dict:
        return {"name": self.name, "low": self.low, "high": self.high, "integer": self.integer, "log": self.log}


def _number(text: str, item: str) -> Decimal:
    try:
        return typed_number(text, negative=True)
    except ValueError as error:
        raise SpaceError(f"--space {item}: {error}") from None


def _declared(strategy: str, name: str) -> tuple[str, Decimal, Decimal, bool, str]:
    """(target, minimum, maximum, integer, canonical name) of a parameter the strategy or SPEC §4 declares."""
    params = REGISTRY[strategy].params
    if name in params:
        spec = params[name]
        return "strategy", Decimal(str(spec.minimum)), Decimal(str(spec.maximum)), spec.integer, name
    upper = name.upper()
    if upper in PARAMETER_SPECS:
        spec = PARAMETER_SPECS[upper]
        return "risk", spec.minimum, spec.maximum, spec.integer, upper
    if upper == SIZING:
        return "sizing", *SIZING_RANGE, False, upper
    known = [*params, *PARAMETER_SPECS, SIZING]
    raise SpaceError(f"--space {name}: unknown parameter for strategy {strategy!r}; known: {', '.join(known)}")


def _text(value: Decimal) -> str:
    return format(value.normalize(), "f")


def parse_dimension(strategy: str, item: str) -> Dimension:
    """``NAME=LOW:HIGH[:int|:float|:log]`` → a Dimension inside the declared range (SpaceError otherwise)."""
    name, sep, rest = item.partition("=")
    name = name.strip()
    parts = rest.split(":")
    if not sep or not name or len(parts) not in (2, 3):
        raise SpaceError(f"--space {item!r}: expected NAME=LOW:HIGH or NAME=LOW:HIGH:int|float|log")
    target, minimum, maximum, integer, name = _declared(strategy, name)
    kind = parts[2].strip().lower() if len(parts) == 3 else ("int" if integer else "float")
    if kind not in KINDS:
        raise SpaceError(f"--space {item!r}: the kind {kind!r} is not one of {', '.join(KINDS)}")
    low, high = _number(parts[0], item), _number(parts[1], item)
    allowed = f"allowed {_text(minimum)}–{_text(maximum)}"
    if integer and kind != "int":
        raise SpaceError(f"--space {item}: {name} is a whole number ({allowed}); use :int or no kind")
    if not (minimum <= low <= maximum and minimum <= high <= maximum):
        raise SpaceError(f"--space {item}: {name} must stay within its declared range ({allowed})")
    if low >= high:
        raise SpaceError(f"--space {item}: {name}'s low end must be below its high end ({allowed})")
    if kind == "int" and (low != low.to_integral_value() or high != high.to_integral_value()):
        raise SpaceError(f"--space {item}: {name} searched as :int needs whole-number ends ({allowed})")
    if kind == "log" and low <= 0:
        raise SpaceError(f"--space {item}: {name} searched as :log needs a low end above 0 ({allowed})")
    if kind == "int":
        return Dimension(name, int(low), int(high), True, False, target)
    return Dimension(name, float(low), float(high), False, kind == "log", target)


def parse_space(strategy: str, items: list[str]) -> list[Dimension]:
    """Every ``--space``; at least one, each parameter once."""
    if strategy not in REGISTRY:
        raise SpaceError(f"unknown strategy {strategy!r}; available: {', '.join(sorted(REGISTRY))}")
    if not items:
        raise SpaceError("give at least one --space NAME=LOW:HIGH")
    dimensions = [parse_dimension(strategy, item) for item in items]
    names = [d.name for d in dimensions]
    for name in names:
        if names.count(name) > 1:
            raise SpaceError(f"--space {name}: given twice")
    return dimensions


def split_params(dimensions: list[Dimension], params: dict) -> tuple[dict, dict, dict]:
    """A trial's values → (strategy params, risk params, sizing) by each dimension's target."""
    parts: dict[str, dict] = {"strategy": {}, "risk": {}, "sizing": {}}
    for dimension in dimensions:
        parts[dimension.target][dimension.name] = params[dimension.name]
    return parts["strategy"], parts["risk"], parts["sizing"]
