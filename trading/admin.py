from django.contrib import admin

from ground.admin_history import HistoryAdmin

from .models import BacktestRun, Signal


@admin.register(Signal)
class SignalAdmin(HistoryAdmin):
    list_display = ("timestamp", "symbol", "side", "confidence", "strategy", "status", "reason")
    list_filter = ("side", "status", "strategy", "symbol")
    search_fields = ("signal_id", "symbol", "reason")


@admin.register(BacktestRun)
class BacktestRunAdmin(HistoryAdmin):
    list_display = ("created_at", "strategy", "candles", "initial_capital", "final_equity", "total_return_pct")
    list_filter = ("strategy", "created_at")
    search_fields = ("strategy", "files")
