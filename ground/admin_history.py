"""The admin's view of what the system records (candles, signals, orders, trades, positions, the book, alerts, risk
events, the audit log, the clock, data freshness, rejected events, run results): looked at and searched, never
added, changed or deleted by hand — a hand-edited row would be evidence that no longer matches what happened.

Shown as people read them, in the list and on each row's page, through ``ground.amounts``: amounts in their
currency's places with the unit (the exact stored value in the cell's title), times in ISO 8601 UTC labelled with
their clock — *market time* for the epoch-millisecond stamps the market clock gives (what the dashboard shows),
*wall time* for the moments the server's clock recorded (``created_at`` …).

What an operator does edit keeps a plain ``ModelAdmin``: risk parameters, notification destinations, users."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime

from django.contrib import admin
from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.utils.html import format_html

from .amounts import DEFAULT_QUOTE, base_of, iso_utc, money, percent, plain, price, quantity, quote_of
from .timeutil import MARKET_TIME_FIELDS, datetime_to_ms

# How a decimal column reads (``HistoryAdmin.amounts``): in the row's quote currency (``money``, ``price``), in its
# base asset (``quantity``), a fraction in percent (``fraction``: 0.0123 → 1.23 %), already percent (``percent``),
# or exact (``exact``: scores, confidences).
MONEY, PRICE, QUANTITY, FRACTION, PERCENT, EXACT = "money", "price", "quantity", "fraction", "percent", "exact"
MARKET_TIME, WALL_TIME = "market time", "wall time"


def wall_time(moment: datetime | date | None) -> str:
    """A moment of the server's clock in ISO 8601 UTC (``2026-12-03T08:05:37Z``); a day as ``2026-12-03``."""
    if moment is None:
        return "–"
    if isinstance(moment, datetime):
        return iso_utc(datetime_to_ms(moment))  # the one shape for people
    return moment.isoformat()


class ReadableColumns:
    """List columns and read-only fields shown for people: each decimal named in ``amounts`` with its kind, every
    date and time field in ISO 8601 UTC with its clock. A row's currency is its ``symbol``'s (``quote_for``)."""

    amounts: dict[str, str] = {}
    market_times: frozenset[str] = MARKET_TIME_FIELDS

    def quote_for(self, obj) -> str:
        """The currency of the row's money and prices: its symbol's quote (override for account-wide rows)."""
        return quote_of(getattr(obj, "symbol", "") or "") or DEFAULT_QUOTE

    def base_for(self, obj) -> str:
        return base_of(getattr(obj, "symbol", "") or "")

    def readable(self, name):
        """``name`` as a column that formats its value, or ``name`` itself when it needs nothing."""
        if not isinstance(name, str):
            return name
        try:
            field = self.model._meta.get_field(name)
        except FieldDoesNotExist:
            return name
        columns = self.__dict__.setdefault("_readable", {})
        if name not in columns:
            columns[name] = self._column(field)
        return columns[name] or name

    def _column(self, field) -> Callable | None:
        name, label = field.name, str(field.verbose_name)
        if name in self.amounts:
            kind = self.amounts[name]

            def show(obj):
                return self._amount(kind, getattr(obj, name), obj)

        elif isinstance(field, models.DateField):  # DateTimeField too

            def show(obj):
                value = getattr(obj, name)
                return self.get_empty_value_display() if value is None else wall_time(value)

            if isinstance(field, models.DateTimeField):
                label = f"{label} ({MARKET_TIME if name in self.market_times else WALL_TIME}, UTC)"
        elif name in self.market_times and isinstance(field, models.IntegerField):

            def show(obj):
                value = getattr(obj, name)
                if value is None:
                    return self.get_empty_value_display()
                return format_html('<span title="{} ms">{}</span>', value, iso_utc(value))

            label = f"{label} ({MARKET_TIME}, UTC)"
        else:
            return None
        show.short_description = label
        show.admin_order_field = name
        return show

    def _amount(self, kind: str, value, obj):
        if value is None:
            return self.get_empty_value_display()
        if kind == MONEY:
            text = money(value, self.quote_for(obj), unit=True)
        elif kind == PRICE:
            text = price(value, self.quote_for(obj))
        elif kind == QUANTITY:
            text = quantity(value, self.base_for(obj))
        elif kind == FRACTION:
            text = percent(value)
        elif kind == PERCENT:
            text = percent(value, fraction=False)
        else:
            text = plain(value)
        return format_html('<span title="{}">{}</span>', plain(value), text)

    def get_list_display(self, request):
        return [self.readable(name) for name in super().get_list_display(request)]

    def get_readonly_fields(self, request, obj=None):
        return [self.readable(name) for name in super().get_readonly_fields(request, obj)]


class ViewOnly:
    """Permissions that let a row be looked at and nothing else: no add, no change (Django's view-only form, no
    Save), no delete."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class HistoryAdmin(ViewOnly, ReadableColumns, admin.ModelAdmin):
    """No "Add", no "Delete", and a change page that only shows the row (every field for people)."""

    def get_fields(self, request, obj=None):
        return [self.readable(name) for name in super().get_fields(request, obj)]


class HistoryInline(ViewOnly, ReadableColumns, admin.TabularInline):
    """The rows of a recorded parent, shown with it and as read-only as it (every field read only, for people)."""

    extra = 0
    can_delete = False

    def get_fields(self, request, obj=None):
        names = self.fields or [field.name for field in self.model._meta.fields if field.editable]
        return [self.readable(name) for name in names]

    def get_readonly_fields(self, request, obj=None):
        return self.get_fields(request, obj)
