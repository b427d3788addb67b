"""Query filters of the list endpoints (django-filter; invalid values answer 400 naming the parameter)."""

from datetime import UTC, date, datetime, timedelta

import django_filters as filters
from django import forms
from django_filters.fields import IsoDateTimeField

from execution.models import SIDES, Order, Position, Trade
from marketdata.models import Candle
from risk.models import Alert, RiskEvent
from trading.models import BacktestRun, Signal


class UtcIsoDateTimeField(IsoDateTimeField):
    """ISO 8601 in any offset Python accepts, turned into UTC (the database takes offsets up to ±15:59 only)."""

    def to_python(self, value):
        moment = super().to_python(value)
        if moment is None:
            return None
        try:
            return moment.astimezone(UTC)
        except (OverflowError, ValueError):
            raise forms.ValidationError("date-time out of range", code="invalid") from None


class UtcIsoDateTimeFilter(filters.IsoDateTimeFilter):
    field_class = UtcIsoDateTimeField


def _since_until(field: str, what: str):
    return (
        UtcIsoDateTimeFilter(field_name=field, lookup_expr="gte", help_text=f"{what} at or after this time (ISO 8601)"),
        UtcIsoDateTimeFilter(field_name=field, lookup_expr="lt", help_text=f"{what} before this time (ISO 8601)"),
    )


class OrderFilter(filters.FilterSet):
    symbol = filters.CharFilter(help_text="e.g. BTC_USDT")
    status = filters.ChoiceFilter(choices=Order.Status.choices)
    side = filters.ChoiceFilter(choices=SIDES)
    since, until = _since_until("created_at", "created")

    class Meta:
        model = Order
        fields = ["symbol", "status", "side", "since", "until"]


class PositionFilter(filters.FilterSet):
    symbol = filters.CharFilter()  # a form field: a NUL is a 400 (PostgreSQL refused the query with a 500)

    class Meta:
        model = Position
        fields = ["symbol"]


class TradeFilter(filters.FilterSet):
    symbol = filters.CharFilter()
    status = filters.ChoiceFilter(choices=Trade.Status.choices)
    since, until = _since_until("entry_time", "entered")
    day = filters.DateFilter(method="filter_day", help_text="closed on this UTC day (YYYY-MM-DD)")

    class Meta:
        model = Trade
        fields = ["symbol", "status", "since", "until", "day"]

    def filter_day(self, queryset, name, value):
        start = datetime(value.year, value.month, value.day, tzinfo=UTC)
        if value == date.max:  # 9999-12-31 has no next day to end it
            return queryset.filter(exit_time__gte=start)
        return queryset.filter(exit_time__gte=start, exit_time__lt=start + timedelta(days=1))


class SignalFilter(filters.FilterSet):
    symbol = filters.CharFilter()
    side = filters.ChoiceFilter(choices=SIDES)
    strategy = filters.CharFilter()
    since, until = _since_until("created_at", "created")

    class Meta:
        model = Signal
        fields = ["symbol", "side", "strategy", "since", "until"]


class AlertFilter(filters.FilterSet):
    level = filters.ChoiceFilter(choices=Alert.Level.choices)
    code = filters.CharFilter()
    symbol = filters.CharFilter()
    since, until = _since_until("created_at", "raised")

    class Meta:
        model = Alert
        fields = ["level", "code", "symbol", "since", "until"]


class RiskEventFilter(filters.FilterSet):
    decision = filters.ChoiceFilter(choices=RiskEvent.Decision.choices)
    layer = filters.CharFilter()
    symbol = filters.CharFilter()
    since, until = _since_until("created_at", "decided")

    class Meta:
        model = RiskEvent
        fields = ["decision", "layer", "symbol", "since", "until"]


class CandleFilter(filters.FilterSet):
    symbol = filters.CharFilter()
    interval = filters.CharFilter()
    since = filters.NumberFilter(
        field_name="timestamp", lookup_expr="gte", help_text="open time at or after (epoch ms)"
    )
    until = filters.NumberFilter(field_name="timestamp", lookup_expr="lt", help_text="open time before (epoch ms)")

    class Meta:
        model = Candle
        fields = ["symbol", "interval", "since", "until"]


class BacktestRunFilter(filters.FilterSet):
    strategy = filters.CharFilter(help_text="e.g. momentum")
    since, until = _since_until("created_at", "run")

    class Meta:
        model = BacktestRun
        fields = ["strategy", "since", "until"]
