"""Strategies registered by name. Adding a strategy is adding one module to this package.

Every module here is imported on start-up; each ``Strategy`` subclass with a ``name``
registers itself. ``STRATEGY`` picks one by name, optionally with parameters:
``momentum`` or ``momentum:ema_fast=9,ema_slow=21,volume_spike=2``.
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import REGISTRY, Candle, Param, Signal, Strategy

for _module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _module.name != "base" and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")


def build_strategy(name: str, **params: float) -> Strategy:
    """Instantiate a registered strategy; unknown names and bad parameters raise ValueError."""
    try:
        cls = REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; available: {', '.join(sorted(REGISTRY))}") from None
    return cls(**params)


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``"name"`` or ``"name:key=value,key=value"`` → (name, {key: value}); malformed specs raise ValueError."""
    name, _, rest = spec.strip().partition(":")
    params: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(
                f"strategy spec {spec!r}: expected key=value, got {item!r} (',' separates the parameters: "
                "a value, such as a file's path, cannot contain one)"
            )
        if key.strip() in params:
            raise ValueError(f"strategy spec {spec!r}: parameter {key.strip()} given twice")
        params[key.strip()] = value.strip()
    return name.strip(), params


def strategy_from_spec(spec: str) -> Strategy:
    """Build the strategy a ``STRATEGY`` setting names (see :func:`parse_spec`)."""
    name, params = parse_spec(spec)
    return build_strategy(name, **params)


__all__ = ["Candle", "Param", "Signal", "Strategy", "REGISTRY", "build_strategy", "parse_spec", "strategy_from_spec"]
