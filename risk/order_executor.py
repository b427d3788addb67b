"""The one entry for an order the desk approved: executed live on the exchange, or left to wait for its candle."""

from __future__ import annotations

from execution.live import live_trading_enabled
from execution.models import Order

from .live_order_service import execute_live
from .order_service import locked_paper_order


def execute_order(event: dict) -> Order | None:
    """Execute the stored PENDING order named by the event, exactly once, on the exchange when live trading is
    enabled. A paper order is not executed here: it meets its price at its symbol's next candle, through the
    desk (``risk.decision_service.fill_waiting_orders``)."""
    if live_trading_enabled():
        return execute_live(event)  # sends to MEXC, books what it executed
    return locked_paper_order(event)
