"""Prometheus metrics of the risk manager."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge

if TYPE_CHECKING:
    from .engine import AccountState

STATE_CODES = {"ACTIVE": 0, "PAUSED": 1, "HALTED": 2}

risk_checks_passed_total = Counter("risk_checks_passed_total", "Orders approved or trimmed by the risk manager")
risk_checks_failed_total = Counter("risk_checks_failed_total", "Orders rejected by the risk manager", ["layer"])
daily_drawdown_percent = Gauge("daily_drawdown_percent", "Loss since 00:00 UTC as a percentage of day-start equity")
total_exposure_percent = Gauge("total_exposure_percent", "Value of open positions as a percentage of equity")
trading_state = Gauge("trading_state", "Trading state: 0 ACTIVE, 1 PAUSED, 2 HALTED")

# The layers of risk.engine that reject most often, at 0 until they do: /metrics lists the counter from start-up.
for _layer in ("input", "state", "position", "watchlist", "data_stale", "exposure"):
    risk_checks_failed_total.labels(layer=_layer)


def record_decision(action: str, layer: str) -> None:
    """A signal's decision: APPROVE or TRIM passed the checks; REJECT failed them at ``layer``."""
    if action in ("APPROVE", "TRIM"):
        risk_checks_passed_total.inc()
    else:
        risk_checks_failed_total.labels(layer=layer).inc()


def record_account(account: AccountState, state: str) -> None:
    daily_drawdown_percent.set(float(account.daily_drawdown * 100))
    equity = account.equity
    total_exposure_percent.set(float(account.exposure / equity * 100) if equity > 0 else 0.0)
    trading_state.set(STATE_CODES.get(state, -1))
