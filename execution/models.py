from decimal import Decimal

from django.conf import settings
from django.db import models

from ground.amounts import base_of, price, quantity, quote_of
from ground.fields import MoneyField
from ground.raw_rows import fetch_singleton

SIDES = [("BUY", "BUY"), ("SELL", "SELL")]


class Order(models.Model):
    """An order, stored PENDING before it is sent anywhere.

    ``client_order_id`` is derived from the signal, so a redelivered task finds
    the existing row instead of creating (or executing) a second one.
    """

    class Purpose(models.TextChoices):
        ENTRY = "entry"
        EXIT = "exit", "exit on a signal"
        STOP_LOSS = "stop_loss"
        DRAWDOWN_CLOSE = "drawdown_close", "closed by the daily drawdown halt"
        OPERATOR_CLOSE = "operator_close", "closed by an operator's halt"

    class Status(models.TextChoices):
        PENDING = "PENDING"
        FILLED = "FILLED"
        PARTIALLY_FILLED = "PARTIALLY_FILLED"
        FAILED = "FAILED"
        REJECTED = "REJECTED"
        EXPIRED = "EXPIRED", "EXPIRED (never sent: too old to send, or what is held is below the market minimum)"
        UNKNOWN = "UNKNOWN", "UNKNOWN (sent, never shown by the exchange: a person must check; not retried)"

    order_id = models.CharField(max_length=64, blank=True, db_index=True, help_text="The executor's id")
    client_order_id = models.CharField(max_length=64, unique=True)
    signal_id = models.CharField(max_length=200, blank=True)
    symbol = models.CharField(max_length=41, db_index=True)
    side = models.CharField(max_length=4, choices=SIDES)
    quantity = MoneyField()
    requested_price = MoneyField(help_text="Market price when the order was approved")
    price = MoneyField(null=True, blank=True, help_text="Average fill price")
    filled_quantity = MoneyField(default=Decimal("0"))
    fees = MoneyField(default=Decimal("0"))
    fees_by_asset = models.JSONField(
        default=dict, blank=True, help_text="Live: the commission in each asset it was paid in"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    reason = models.TextField(blank=True)
    event_time = models.BigIntegerField(db_index=True, help_text="Event time of the decision, epoch ms")
    source_timestamp = models.BigIntegerField(null=True, blank=True, help_text="market_data that caused it")
    submitted_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True, help_text="When it was sent to the live exchange")
    filled_at = models.DateTimeField(null=True, blank=True)
    entry_price = MoneyField(null=True, blank=True)
    stop_loss = MoneyField(null=True, blank=True)
    take_profit = MoneyField(null=True, blank=True)
    purpose = models.CharField(max_length=16, choices=Purpose.choices, default=Purpose.ENTRY, db_index=True)
    strategy = models.CharField(max_length=64, blank=True)
    risk_score = models.DecimalField(max_digits=6, decimal_places=5, null=True, blank=True)
    risk_checks = models.JSONField(default=list, blank=True)
    result_published = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-event_time", "-id"]

    def __str__(self) -> str:
        amount = quantity(self.quantity, base_of(self.symbol))
        return f"{self.side} {amount} {self.symbol} [{self.status}] {self.client_order_id}"


class Trade(models.Model):
    """A round trip: opened by a FILLED BUY, closed by a SELL with realized profit/loss."""

    class Status(models.TextChoices):
        OPEN = "OPEN"
        CLOSED = "CLOSED"

    trade_id = models.CharField(max_length=64, unique=True)
    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="trades")
    exit_order = models.ForeignKey(Order, on_delete=models.PROTECT, null=True, blank=True, related_name="closed_trades")
    symbol = models.CharField(max_length=41, db_index=True)
    quantity = MoneyField()
    entry_price = MoneyField()
    entry_time = models.DateTimeField()
    entry_fees = MoneyField(default=Decimal("0"))
    stop_loss = MoneyField(null=True, blank=True, help_text="This lot's stop: entry price × (1 − STOP_LOSS_PCT)")
    exit_price = MoneyField(null=True, blank=True)
    exit_time = models.DateTimeField(null=True, blank=True)
    exit_fees = MoneyField(default=Decimal("0"))
    exit_reason = models.CharField(max_length=64, blank=True)
    profit_loss = MoneyField(null=True, blank=True)
    profit_loss_percent = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.OPEN, db_index=True)

    class Meta:
        ordering = ["-entry_time", "-id"]

    def __str__(self) -> str:
        amount, quote = quantity(self.quantity, base_of(self.symbol)), quote_of(self.symbol)
        return f"{self.symbol} {amount} @ {price(self.entry_price, quote)} [{self.status}]"


class Position(models.Model):
    symbol = models.CharField(max_length=41, unique=True)
    quantity = MoneyField(default=Decimal("0"))
    cost_basis = MoneyField(default=Decimal("0"), help_text="What the quantity held cost, fees excluded")
    avg_entry_price = MoneyField(default=Decimal("0"))
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["symbol"]

    def __str__(self) -> str:
        amount = quantity(self.quantity, base_of(self.symbol))
        return f"{self.symbol} {amount} @ {price(self.avg_entry_price, quote_of(self.symbol))}"


class Portfolio(models.Model):
    """Cash and running totals of the paper (or live) account, one row."""

    initial_capital = MoneyField()
    cash = MoneyField()
    realized_pnl = MoneyField(default=Decimal("0"))
    fees_paid = MoneyField(default=Decimal("0"))
    day = models.DateField(null=True, blank=True, help_text="UTC day the day-start equity belongs to")
    day_start_equity = MoneyField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = verbose_name_plural = "portfolio"  # one row

    def __str__(self) -> str:
        return "the account's book"  # its amounts are read in the admin, in the account's currency

    @classmethod
    def load(cls, *, for_update: bool = False) -> "Portfolio":
        portfolio = fetch_singleton(cls, for_update=for_update)
        if portfolio is None:
            capital = Decimal(settings.INITIAL_CAPITAL)
            cls.objects.get_or_create(pk=1, defaults={"initial_capital": capital, "cash": capital})
            portfolio = fetch_singleton(cls, for_update=for_update)
        return portfolio


class BalanceCheck(models.Model):
    """The last comparison of the book with the exchange's balances (live trading; one row, ``risk.reconcile``)."""

    checked_at = models.DateTimeField()
    ok = models.BooleanField(default=True)
    detail = models.TextField(blank=True, help_text="What was compared, or why the check was skipped")
    differences = models.JSONField(default=list, blank=True, help_text="[{asset, book, exchange, difference}]")

    def __str__(self) -> str:
        return f"balances {'ok' if self.ok else 'DIFFER'} at {self.checked_at:%Y-%m-%dT%H:%M:%SZ}"
