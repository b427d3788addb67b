from django.contrib import admin

from ground.admin_history import EXACT, MONEY, PERCENT, PRICE, QUANTITY, HistoryAdmin
from marketdata.watchlist import account_quote

from .models import BalanceCheck, Order, Portfolio, Position, Trade


@admin.register(Order)
class OrderAdmin(HistoryAdmin):
    list_display = ("created_at", "client_order_id", "symbol", "side", "quantity", "price", "status", "fees")
    list_filter = ("status", "side", "symbol", "strategy", "created_at")
    search_fields = ("client_order_id", "order_id", "signal_id", "symbol", "reason")
    date_hierarchy = "created_at"
    amounts = {
        "quantity": QUANTITY,
        "filled_quantity": QUANTITY,
        "requested_price": PRICE,
        "price": PRICE,
        "entry_price": PRICE,
        "stop_loss": PRICE,
        "take_profit": PRICE,
        "fees": MONEY,
        "risk_score": EXACT,
    }


@admin.register(Trade)
class TradeAdmin(HistoryAdmin):
    list_display = (
        "trade_id",
        "symbol",
        "quantity",
        "entry_price",
        "exit_price",
        "profit_loss",
        "profit_loss_percent",
        "status",
    )
    list_filter = ("status", "symbol", "exit_reason")
    search_fields = ("trade_id", "symbol", "order__client_order_id")
    amounts = {
        "quantity": QUANTITY,
        "entry_price": PRICE,
        "stop_loss": PRICE,
        "exit_price": PRICE,
        "entry_fees": MONEY,
        "exit_fees": MONEY,
        "profit_loss": MONEY,
        "profit_loss_percent": PERCENT,
    }


@admin.register(Position)
class PositionAdmin(HistoryAdmin):
    """The book as the fills made it (risk.order_service): a hand edit would part it from the orders and trades."""

    list_display = ("symbol", "quantity", "avg_entry_price", "updated_at")
    list_filter = ("symbol",)
    search_fields = ("symbol",)
    amounts = {"quantity": QUANTITY, "avg_entry_price": PRICE, "cost_basis": MONEY}


@admin.register(Portfolio)
class PortfolioAdmin(HistoryAdmin):
    list_display = ("cash", "realized_pnl", "fees_paid", "initial_capital", "updated_at")
    list_filter = ("updated_at",)
    search_fields = ("id",)
    amounts = dict.fromkeys(("initial_capital", "cash", "realized_pnl", "fees_paid", "day_start_equity"), MONEY)

    def quote_for(self, obj) -> str:
        return account_quote()  # the account's money: the quote its watched symbols share


@admin.register(BalanceCheck)
class BalanceCheckAdmin(HistoryAdmin):
    """The last comparison of the book with the exchange (live trading): written by the check, never by hand."""

    list_display = ("checked_at", "ok", "detail")
    list_filter = ("ok", "checked_at")
    search_fields = ("detail",)
