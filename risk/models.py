from django.conf import settings
from django.db import models

from execution.models import Portfolio
from ground.fields import MoneyField
from ground.raw_rows import fetch_singleton, fetch_singleton_rows, fetch_singletons

HALT_PERMISSION = "risk.halt_trading"  # who may halt and release trading (TradingState.Meta.permissions)


class TradingState(models.Model):
    """The account's trading state, one row. Its row lock serializes every risk decision."""

    class State(models.TextChoices):
        ACTIVE = "ACTIVE"
        PAUSED = "PAUSED"
        HALTED = "HALTED"

    state = models.CharField(max_length=8, choices=State.choices, default=State.ACTIVE)
    reason = models.CharField(max_length=500, blank=True)
    since = models.DateTimeField(auto_now_add=True)
    changed_by = models.CharField(max_length=150, blank=True)
    pause_layer = models.CharField(
        max_length=32, blank=True, help_text="The layer that paused or halted trading (empty for a person's halt)"
    )
    breaker_symbol = models.CharField(max_length=41, blank=True)
    breaker_tries = models.PositiveIntegerField(default=0)
    breaker_checked_ms = models.BigIntegerField(null=True, blank=True)
    breaker_price = models.DecimalField(
        max_digits=30,
        decimal_places=12,
        null=True,
        blank=True,
        help_text="A slippage trip: the breaker symbol's price at the trip or the last retry (empty: a spread trip)",
    )

    # Not stored: set by a person's halt or release that found trading in that state already, saying so
    # (``risk.state.outcome``); empty when the action changed the state.
    already = ""

    class Meta:
        permissions = [("halt_trading", "Can halt and release trading")]
        verbose_name = verbose_name_plural = "trading state"  # one row

    def __str__(self) -> str:
        return f"{self.state} since {self.since:%Y-%m-%dT%H:%M:%SZ} (market time) ({self.reason or 'no reason'})"

    @classmethod
    def load(cls, *, for_update: bool = False) -> "TradingState":
        state = fetch_singleton(cls, for_update=for_update)
        if state is None:
            cls.objects.get_or_create(pk=1)
            state = fetch_singleton(cls, for_update=for_update)
        return state

    @classmethod
    def load_with_parameters(cls, *, for_update: bool = False) -> tuple["TradingState", "RiskParameters"]:
        """``load`` and ``RiskParameters.load`` in one statement: every decision reads both. With ``for_update``
        only the state is locked; the parameters are read as the statement began (a parameter change committed
        while it waited for the lock counts as made after the decision — it writes nothing the decision reads)."""
        found = fetch_singletons(cls, RiskParameters, lock_first=for_update)
        if found is None:  # not created yet
            cls.load()
            RiskParameters.load()
            found = fetch_singletons(cls, RiskParameters, lock_first=for_update)
        return found

    @classmethod
    def load_for_fills(cls) -> tuple["TradingState", "RiskParameters", Portfolio]:
        """``load_with_parameters(for_update=True)`` and the portfolio, locked too, in one statement: a paper fill
        step's first read (``risk.decision_service.fill_market``). A locked row is read as it is once its lock is
        had; the parameters as the statement began (see ``load_with_parameters``)."""
        found = fetch_singleton_rows((cls, RiskParameters, Portfolio), locked=(cls, Portfolio))
        if found is None:  # not created yet
            cls.load()
            RiskParameters.load()
            Portfolio.load()
            found = fetch_singleton_rows((cls, RiskParameters, Portfolio), locked=(cls, Portfolio))
        return found


class RiskParameters(models.Model):
    """The risk limits of SPEC §4, one row, seeded from the environment and edited in the admin."""

    max_daily_drawdown_pct = models.DecimalField(max_digits=8, decimal_places=5)
    max_slippage_pct = models.DecimalField(max_digits=8, decimal_places=5)
    max_spread_multiplier = models.DecimalField(max_digits=8, decimal_places=3)
    data_stale_timeout_sec = models.PositiveIntegerField()
    max_exposure_pct = models.DecimalField(max_digits=8, decimal_places=5)
    max_position_pct = models.DecimalField(max_digits=8, decimal_places=5)
    stop_loss_pct = models.DecimalField(max_digits=8, decimal_places=5)
    max_orders_per_minute = models.PositiveIntegerField()
    cooldown_after_stop_min = models.PositiveIntegerField()
    sources = models.JSONField(default=dict, help_text="Where each value came from: env, admin or default")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "risk parameters"

    def __str__(self) -> str:
        return "Risk parameters"

    @classmethod
    def load(cls) -> "RiskParameters":
        """The single row, created from the env-seeded values on first use."""
        existing = fetch_singleton(cls)
        if existing is not None:
            return existing
        seeds = settings.RISK_PARAMETER_SEEDS
        values = {name.lower(): seed.value for name, seed in seeds.items()}
        cls.objects.get_or_create(
            pk=1, defaults={**values, "sources": {name: seed.source for name, seed in seeds.items()}}
        )
        return fetch_singleton(cls)  # read back, so values carry the stored precision on every backend

    def as_dict(self) -> dict:
        from risk.parameters import PARAMETER_SPECS

        return {name: getattr(self, name.lower()) for name in PARAMETER_SPECS}


class AccountVersion(models.Model):
    """A counter that goes up with every change of what the account view reads (``risk.account_view``), one row,
    kept by database triggers (migration 0006) on the portfolio, the positions, the orders, the trades, the trading
    state and the risk parameters, whoever writes them: the services, the admin, a bulk UPDATE.

    An order or a trade bumps it only when a column the account is built from changes (an order's status, symbol,
    side, quantity, requested price or event time; a trade's status, symbol, quantity, stop or entry time), so that
    marking a live order sent, for instance, takes no lock on this row. The bump is part of the writer's
    transaction: a reader that sees a version sees everything written up to it. The market watch
    (``risk.decision_service.MarketWatch``) reads it before each candle and reads the account again only when it
    moved. A row created again (a flushed test database) starts from the clock in microseconds, never from a value
    an earlier row had."""

    version = models.BigIntegerField()

    class Meta:
        verbose_name = verbose_name_plural = "account version"  # one row


class RiskEvent(models.Model):
    """One risk decision (approve / trim / reject) or state transition, with the numbers behind it."""

    class Decision(models.TextChoices):
        APPROVE = "APPROVE"
        TRIM = "TRIM"
        REJECT = "REJECT"
        STATE_CHANGE = "STATE_CHANGE"

    decision = models.CharField(max_length=12, choices=Decision.choices, db_index=True)
    layer = models.CharField(max_length=32, blank=True, db_index=True)
    symbol = models.CharField(max_length=41, blank=True, db_index=True)
    signal_id = models.CharField(max_length=200, blank=True)
    client_order_id = models.CharField(max_length=64, blank=True, db_index=True)
    requested_quantity = MoneyField(null=True, blank=True)
    approved_quantity = MoneyField(null=True, blank=True)
    reason = models.TextField()
    details = models.JSONField(default=dict, blank=True)
    timestamp = models.BigIntegerField(help_text="Event time, epoch ms")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.decision} {self.symbol}: {self.reason[:60]}"


class Alert(models.Model):
    class Level(models.TextChoices):
        INFO = "INFO"
        WARNING = "WARNING"
        CRITICAL = "CRITICAL"

    level = models.CharField(max_length=8, choices=Level.choices, db_index=True)
    code = models.CharField(max_length=40, db_index=True)
    message = models.TextField()
    symbol = models.CharField(max_length=41, blank=True)
    timestamp = models.BigIntegerField(help_text="Event time, epoch ms")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"[{self.level}] {self.code}: {self.message[:60]}"


class AuditLog(models.Model):
    """Who changed what, when and why: parameter edits, halts and releases."""

    actor = models.CharField(max_length=150)
    action = models.CharField(max_length=40, db_index=True)
    target = models.CharField(max_length=100, blank=True)
    old_value = models.JSONField(null=True, blank=True)
    new_value = models.JSONField(null=True, blank=True)
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%dT%H:%M:%SZ} {self.actor} {self.action} {self.target}"
