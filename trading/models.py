from django.db import models

from ground.amounts import counted, iso_utc
from ground.fields import MoneyField


class Signal(models.Model):
    """A strategy's BUY/SELL recommendation for one candle.

    ``signal_id`` is deterministic (symbol + strategy + candle timestamp), so two
    workers handling the same candle cannot store it twice.
    """

    class Status(models.TextChoices):
        NEW = "NEW", "new (not yet decided by risk)"
        DECIDED = "DECIDED", "decided by risk"

    signal_id = models.CharField(max_length=200, unique=True)
    symbol = models.CharField(max_length=41, db_index=True)
    interval = models.CharField(max_length=8)
    side = models.CharField(max_length=4, choices=[("BUY", "BUY"), ("SELL", "SELL")])
    confidence = models.DecimalField(max_digits=6, decimal_places=5)
    reason = models.TextField()
    strategy = models.CharField(max_length=64)
    price = MoneyField()
    timestamp = models.BigIntegerField(help_text="Candle time, epoch ms")
    components = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.NEW)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-timestamp", "-id"]

    def __str__(self) -> str:
        return f"{self.side} {self.symbol} @ {iso_utc(self.timestamp)} ({self.strategy})"


class BacktestRun(models.Model):
    """A stored backtest (``manage.py backtest --save``): its parameters and its full JSON report."""

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    strategy = models.CharField(max_length=64)
    parameters = models.JSONField(default=dict)
    files = models.JSONField(default=list)
    initial_capital = MoneyField()
    final_equity = MoneyField()
    total_return_pct = models.DecimalField(max_digits=16, decimal_places=6)
    candles = models.PositiveIntegerField()
    report = models.JSONField()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"#{self.pk} {self.strategy} {self.total_return_pct:+.2f} % over {counted(self.candles, 'candle')}"
