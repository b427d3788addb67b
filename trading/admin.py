from django.contrib import admin

from ground.admin_history import EXACT, MONEY, PERCENT, PRICE, HistoryAdmin

from .backtest_report import report_quote
from .models import BacktestRun, Signal


@admin.register(Signal)
class SignalAdmin(HistoryAdmin):
    list_display = ("timestamp", "symbol", "side", "confidence", "strategy", "status", "reason")
    list_filter = ("side", "status", "strategy", "symbol")
    search_fields = ("signal_id", "symbol", "reason")
    amounts = {"confidence": EXACT, "price": PRICE}


@admin.register(BacktestRun)
class BacktestRunAdmin(HistoryAdmin):
    list_display = ("created_at", "strategy", "candles", "initial_capital", "final_equity", "total_return_pct")
    list_filter = ("strategy", "created_at")
    search_fields = ("strategy", "files")
    amounts = {"initial_capital": MONEY, "final_equity": MONEY, "total_return_pct": PERCENT}

    def quote_for(self, obj) -> str:
        return report_quote({"files": [], **(obj.report or {})})  # the quote its files share (BTC for ETH_BTC)
