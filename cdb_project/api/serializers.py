"""Serializers: the models as JSON (money as strings, exact) and the shapes of status, halt and parameters."""

from datetime import timedelta
from decimal import Decimal

from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.authtoken.serializers import AuthTokenSerializer

from execution.models import Order, Position, Trade
from ground.amounts import plain
from ground.api_times import IsoTimeField
from ground.numbers import typed_number
from ground.timeutil import WALL_TIME_TEXT
from marketdata.models import Candle
from risk.models import Alert, RiskEvent
from risk.parameters import PARAMETER_SPECS
from risk.parameters_service import validate_changes
from trading.backtest_report import amounts as backtest_amounts
from trading.backtest_report import exact_summary, parameter_text
from trading.models import BacktestRun, Signal

from .fields import ModelSerializer, PlainDecimalField


class OrderSerializer(ModelSerializer):
    class Meta:
        model = Order
        fields = [
            "id",
            "order_id",
            "client_order_id",
            "signal_id",
            "symbol",
            "side",
            "quantity",
            "requested_price",
            "price",
            "filled_quantity",
            "fees",
            "status",
            "purpose",
            "reason",
            "event_time",
            "submitted_at",
            "filled_at",
            "entry_price",
            "stop_loss",
            "take_profit",
            "strategy",
            "risk_score",
            "risk_checks",
            "created_at",
        ]


class TradeSerializer(ModelSerializer):
    order = serializers.SlugRelatedField(slug_field="client_order_id", read_only=True)
    exit_order = serializers.SlugRelatedField(slug_field="client_order_id", read_only=True, allow_null=True)
    duration_seconds = serializers.SerializerMethodField(help_text="exit time − entry time (closed trades)")

    class Meta:
        model = Trade
        fields = [
            "id",
            "trade_id",
            "order",
            "exit_order",
            "symbol",
            "quantity",
            "entry_price",
            "entry_time",
            "entry_fees",
            "exit_price",
            "exit_time",
            "exit_fees",
            "exit_reason",
            "profit_loss",
            "profit_loss_percent",
            "status",
            "duration_seconds",
        ]

    @extend_schema_field(serializers.CharField(allow_null=True, help_text="an exact decimal string: 240, 0.5"))
    def get_duration_seconds(self, trade: Trade) -> str | None:
        if not trade.exit_time:
            return None
        return plain(Decimal((trade.exit_time - trade.entry_time) // timedelta(microseconds=1)) / 1_000_000)


class TradeTotalsSerializer(serializers.Serializer):
    trades = serializers.IntegerField()
    wins = serializers.IntegerField()
    win_rate = PlainDecimalField(max_digits=None, decimal_places=None, allow_null=True)
    profit_loss = PlainDecimalField(max_digits=40, decimal_places=12)
    fees = PlainDecimalField(max_digits=40, decimal_places=12)


class PositionSerializer(ModelSerializer):
    price = PlainDecimalField(
        max_digits=30, decimal_places=12, allow_null=True, read_only=True, help_text="latest close"
    )
    market_value = PlainDecimalField(max_digits=40, decimal_places=12, allow_null=True, read_only=True)
    unrealized_pnl = PlainDecimalField(max_digits=40, decimal_places=12, allow_null=True, read_only=True)
    unrealized_pnl_percent = PlainDecimalField(max_digits=30, decimal_places=6, allow_null=True, read_only=True)

    class Meta:
        model = Position
        fields = [
            "symbol",
            "quantity",
            "avg_entry_price",
            "price",
            "market_value",
            "unrealized_pnl",
            "unrealized_pnl_percent",
            "updated_at",
        ]


class SignalSerializer(ModelSerializer):
    class Meta:
        model = Signal
        fields = [
            "id",
            "signal_id",
            "symbol",
            "interval",
            "side",
            "confidence",
            "reason",
            "strategy",
            "price",
            "timestamp",
            "components",
            "status",
            "created_at",
        ]


class AlertSerializer(ModelSerializer):
    class Meta:
        model = Alert
        fields = ["id", "level", "code", "message", "symbol", "timestamp", "created_at"]


class RiskEventSerializer(ModelSerializer):
    class Meta:
        model = RiskEvent
        fields = [
            "id",
            "decision",
            "layer",
            "symbol",
            "signal_id",
            "client_order_id",
            "requested_quantity",
            "approved_quantity",
            "reason",
            "details",
            "timestamp",
            "created_at",
        ]


class CandleSerializer(ModelSerializer):
    class Meta:
        model = Candle
        fields = ["symbol", "interval", "timestamp", "open", "high", "low", "close", "volume"]


# --- trading state, halt / release ---------------------------------------------------------------------


class ChartQuerySerializer(serializers.Serializer):
    symbol = serializers.CharField(max_length=41)
    interval = serializers.CharField(max_length=8, required=False)
    until = serializers.IntegerField(required=False, min_value=0, max_value=253402300799999)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=1000, default=300)


class TradingStateSerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=["ACTIVE", "PAUSED", "HALTED"])
    reason = serializers.CharField(allow_blank=True)
    since = IsoTimeField(
        help_text="when the state began: ISO 8601 UTC on the market clock (the candles' time, `market_time_ms` of "
        "/api/status/), not the server's wall clock"
    )
    changed_by = serializers.CharField(allow_blank=True)
    layer = serializers.CharField(
        source="pause_layer",
        allow_blank=True,
        help_text="what paused or halted trading: a risk layer (drawdown, circuit_breaker, data_stale), "
        "operator_close for a person's halt that closes every position, empty for a person's plain halt",
    )


class StateChangeSerializer(TradingStateSerializer):
    changed = serializers.BooleanField(help_text="false: trading was in that state already (a halt's reason is added)")
    message = serializers.CharField(help_text="what happened, as a person reads it")


class TokenRequestSerializer(AuthTokenSerializer):
    """DRF's username + password, bounded as a user's fields are (a longer name cannot be a user, and the login
    throttle stores what it is given)."""

    username = serializers.CharField(label="Username", max_length=150, write_only=True)
    password = serializers.CharField(
        label="Password", max_length=4096, style={"input_type": "password"}, trim_whitespace=False, write_only=True
    )


class HaltSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=500, help_text="why trading is halted (required)")
    close_positions = serializers.BooleanField(
        default=False,
        help_text="also close every position, at the first price after the halt, until the account is flat",
    )

    def validate_reason(self, value: str) -> str:
        if not value.strip():
            raise serializers.ValidationError("a halt needs a reason")
        return value.strip()


class ReleaseSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


# --- status -------------------------------------------------------------------------------------------


def _decimal_string(help_text: str = "") -> PlainDecimalField:
    """An exact decimal string in the answer (money, quantities and shares are never floats)."""
    return PlainDecimalField(max_digits=None, decimal_places=None, help_text=help_text or None)


FRACTION = "a fraction, as every _pct of the live system: 0.01 = 1 %"


class AccountSerializer(serializers.Serializer):
    quote = serializers.CharField(help_text="the quote currency the account's money is counted in (e.g. USDT)")
    quote_decimals = serializers.IntegerField(help_text="the places a person reads that currency in (USDT: 2)")
    initial_capital = _decimal_string()
    cash = _decimal_string()
    equity = _decimal_string()
    realized_pnl = _decimal_string()
    fees_paid = _decimal_string()
    day_start = IsoTimeField(help_text="00:00 UTC of the current market day")
    day_start_equity = _decimal_string()
    daily_pnl = _decimal_string()
    daily_pnl_pct = _decimal_string(f"the day's P&L as a share of the day's start equity; {FRACTION}")
    drawdown_pct = _decimal_string(f"loss since 00:00 UTC as a share of the day's start equity; {FRACTION}")
    drawdown_limit_pct = _decimal_string(f"MAX_DAILY_DRAWDOWN_PCT; {FRACTION}")
    exposure = _decimal_string()
    exposure_pct = _decimal_string(f"exposure as a share of equity; {FRACTION}")
    exposure_limit_pct = _decimal_string(f"MAX_EXPOSURE_PCT; {FRACTION}")
    open_positions = serializers.IntegerField()


class FreshnessSerializer(serializers.Serializer):
    symbol = serializers.CharField()
    last_seen_ms = serializers.IntegerField(allow_null=True)
    age_sec = serializers.IntegerField(
        allow_null=True, min_value=0, help_text="whole seconds of market time since the data, never negative"
    )
    ahead_sec = serializers.IntegerField(
        min_value=0, help_text="whole seconds the data is ahead of the market clock (a replay of later candles), else 0"
    )
    stale = serializers.BooleanField()


class CheckSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    detail = serializers.CharField(allow_blank=True)


class HealthSerializer(serializers.Serializer):
    database = CheckSerializer()
    redis = CheckSerializer()
    workers = CheckSerializer()
    notifications = CheckSerializer(required=False)
    balances = CheckSerializer(required=False, help_text="Live: the book against the exchange's balances")


class StatusSerializer(serializers.Serializer):
    trading_state = TradingStateSerializer()
    mode = serializers.ChoiceField(choices=["PAPER", "LIVE"])
    embedded = serializers.BooleanField()
    market_time_ms = serializers.IntegerField(help_text="the market clock every time of the page is in, epoch ms")
    wall_time_ms = serializers.IntegerField(help_text="this server's wall clock, epoch ms")
    clock = serializers.CharField(help_text="what drives the market clock (the simulation's pace, a replay, live)")
    account = AccountSerializer()
    freshness = FreshnessSerializer(many=True)
    health = HealthSerializer()


# --- risk parameters ----------------------------------------------------------------------------------


PARAMETER_VALUE = "an exact decimal string, as `risk_status --json` prints it (0.05, 30); a _PCT is a fraction"


class ParameterRangeSerializer(serializers.Serializer):
    minimum = serializers.CharField(help_text=PARAMETER_VALUE)
    maximum = serializers.CharField(help_text=PARAMETER_VALUE)
    default = serializers.CharField(help_text=PARAMETER_VALUE)
    description = serializers.CharField()


class TypedNumberMixin:
    """A parameter given as text follows the one rule for a number a person types (``ground.numbers``): DRF would
    read ``"1_0"``, ``"5e-2"``, ``"+0.1"`` or ``"０.２"`` as numbers; a 400 naming the parameter and the rule. A JSON
    number is a number already."""

    def to_internal_value(self, data):
        if isinstance(data, str):
            try:
                typed_number(data)
            except ValueError as error:
                raise serializers.ValidationError(f"{self.field_name}: {error}") from None
        return super().to_internal_value(data)


class ParameterDecimalField(TypedNumberMixin, serializers.DecimalField):
    """A fractional parameter: read from a JSON number or a decimal string, answered as its exact decimal string
    without the column's padding (``"0.05"``, not ``0.05`` nor ``"0.05000"``)."""

    def to_representation(self, value):
        return plain(value)


class ParameterIntegerField(TypedNumberMixin, serializers.IntegerField):
    """A whole parameter (seconds, minutes, a count): read from a number or a string, answered as a decimal string
    like every other parameter (``"30"``)."""

    def to_representation(self, value):
        return plain(value)


class ParameterFieldSchema(OpenApiSerializerFieldExtension):
    """OpenAPI for a parameter: a JSON number or a decimal string in a request, a decimal string in an answer."""

    target_class = ParameterDecimalField
    match_subclasses = True

    def map_serializer_field(self, auto_schema, direction):
        number = auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)
        text = {"type": "string", "pattern": r"^\d+(\.\d*[1-9])?$", "description": PARAMETER_VALUE}
        if direction == "response":
            return text
        return {"oneOf": [{k: v for k, v in number.items() if k != "description"}, {"type": "string"}]}


class ParameterIntegerFieldSchema(ParameterFieldSchema):
    target_class = ParameterIntegerField


def _parameter_field(name: str):
    spec = PARAMETER_SPECS[name]
    message = f"{name}: out of range (allowed {spec.describe_range()})"
    common = {
        "required": False,
        "source": name.lower(),  # the model's field
        "min_value": spec.minimum,
        "max_value": spec.maximum,
        "help_text": f"{spec.description}. Allowed {spec.describe_range()}, default {plain(spec.default)}. "
        f"Also accepted as {name.lower()}.",
        "error_messages": {"min_value": message, "max_value": message},
    }
    if spec.integer:
        return ParameterIntegerField(**{**common, "min_value": int(spec.minimum), "max_value": int(spec.maximum)})
    # Any precision is accepted; the service rounds to what the column stores.
    return ParameterDecimalField(max_digits=None, decimal_places=None, coerce_to_string=False, **common)


def canonical_parameter_names(data) -> dict:
    """Parameter names as SPEC §4 writes them (``MAX_EXPOSURE_PCT``) whatever their case (``max_exposure_pct`` as
    the environment's lower-case twin); other keys as they are. A name given twice is a 400 naming it."""
    out: dict = {}
    for key in data:
        name = key.upper() if isinstance(key, str) and key.upper() in PARAMETER_SPECS else key
        if isinstance(key, str) and key.lower() == "reason":
            name = "reason"
        if name in out:
            raise serializers.ValidationError({name: [f"{name} given twice (names are accepted in either case)"]})
        out[name] = data[key]
    return out


class RiskParametersSerializer(serializers.Serializer):
    """Every SPEC §4 parameter by its SPEC name (upper case; lower case accepted too); PATCH any subset (plus an
    optional ``reason`` for the audit log)."""

    locals().update({name: _parameter_field(name) for name in PARAMETER_SPECS})
    reason = serializers.CharField(
        write_only=True, required=False, allow_blank=True, max_length=1000, help_text="kept in the audit log"
    )
    sources = serializers.DictField(child=serializers.CharField(), read_only=True, help_text="env, admin or default")
    ranges = serializers.SerializerMethodField()
    updated_at = IsoTimeField(read_only=True, help_text=WALL_TIME_TEXT)

    @extend_schema_field(serializers.DictField(child=ParameterRangeSerializer()))
    def get_ranges(self, obj) -> dict:
        return {
            name: {
                "minimum": plain(spec.minimum),
                "maximum": plain(spec.maximum),
                "default": plain(spec.default),
                "description": spec.description,
            }
            for name, spec in PARAMETER_SPECS.items()
        }

    def to_internal_value(self, data):
        if hasattr(data, "keys"):
            data = canonical_parameter_names(data)
        return super().to_internal_value(data)

    def validate(self, attrs):
        known = set(self.fields)
        given = getattr(self, "initial_data", {}) or {}
        names = set(canonical_parameter_names(given) if hasattr(given, "keys") else ())
        unknown = sorted(names - known)
        if unknown:
            raise serializers.ValidationError({name: ["unknown field"] for name in unknown})
        read_only = sorted(name for name in names if self.fields[name].read_only)
        if read_only:
            raise serializers.ValidationError({name: [f"{name} is read-only"] for name in read_only})
        changes = {k: v for k, v in attrs.items() if k != "reason"}
        try:
            validate_changes(changes)
        except ValueError as error:
            field = str(error).split(":", 1)[0].upper()
            raise serializers.ValidationError({field: [str(error)]})
        return attrs


BACKTEST_FIELDS = [
    "id",
    "created_at",
    "strategy",
    "parameters",
    "files",
    "initial_capital",
    "final_equity",
    "total_return_pct",
    "candles",
]


# The backtest report's figures are in percent, as stored runs hold them (docs/clock-and-amounts.md#percentages).
BACKTEST_PERCENT = "in percent (12.5 = 12.5 %), as the backtest report's summary; the live system's _pct are fractions"


def exact_run(data: dict, run: BacktestRun) -> dict:
    """A stored run as its report gives it. Its parameters as /api/risk/parameters/ gives them ("5", "0.5": runs
    stored before wrote "5.0"); its capital, final equity and return the report's exact strings, not the columns'
    (``total_return_pct`` keeps 6 places, SQLite's REAL about 16 digits: "0.114302" and "10011.4301799034" where the
    report has "0.11430179903408" and "10011.430179903408"; the columns stay for sorting and the admin)."""
    if isinstance(data.get("parameters"), dict):
        data["parameters"] = {key: parameter_text(value) for key, value in data["parameters"].items()}
    report = run.report if isinstance(run.report, dict) else {}
    summary = exact_summary(report.get("summary") or {})  # a run stored before kept floats
    for key, value in (
        ("initial_capital", report.get("initial_capital")),
        ("final_equity", report.get("final_equity")),
        ("total_return_pct", summary.get("total_return_pct")),
    ):
        if value is not None:
            data[key] = value
    return data


class BacktestRunSerializer(ModelSerializer):
    """A stored run without its bulky report: the summary only (the detail endpoint has the whole report)."""

    summary = serializers.SerializerMethodField()
    amounts = serializers.SerializerMethodField()

    class Meta:
        model = BacktestRun
        fields = [*BACKTEST_FIELDS, "summary", "amounts"]
        extra_kwargs = {"total_return_pct": {"help_text": BACKTEST_PERCENT}}

    def to_representation(self, instance):
        return exact_run(super().to_representation(instance), instance)

    @extend_schema_field(
        serializers.DictField(
            help_text="the report's summary: total_return_pct, max_drawdown_pct and time_in_market_pct "
            f"{BACKTEST_PERCENT}; win_rate a fraction (the report's `units` says each)"
        )
    )
    def get_summary(self, run: BacktestRun) -> dict:
        return exact_summary(run.report.get("summary", {}))  # a run stored before kept floats

    @extend_schema_field(serializers.DictField())
    def get_amounts(self, run: BacktestRun) -> dict:
        """Capital, final equity and fees for people, in the quote currency (``0.95764109 BTC``); profit factor and
        Sharpe (``0.42``) and the run time (``0.252 s``) as the command and the HTML report print them."""
        return backtest_amounts(run.report, trades=False)


class BacktestRunDetailSerializer(ModelSerializer):
    """A stored run with its full JSON report, exactly as ``manage.py backtest --json`` wrote it."""

    amounts = serializers.SerializerMethodField()

    class Meta:
        model = BacktestRun
        fields = [*BACKTEST_FIELDS, "report", "amounts"]
        extra_kwargs = {"total_return_pct": {"help_text": BACKTEST_PERCENT}}

    def to_representation(self, instance):
        return exact_run(super().to_representation(instance), instance)

    @extend_schema_field(serializers.DictField())
    def get_amounts(self, run: BacktestRun) -> dict:
        """The run's money, ratios and run time and, in ``trades`` (the report's order), each trade's prices, quantity,
        P&L, duration (``3h 40m``) and exit reason (``stop-loss``) for people, as the HTML report shows them."""
        return backtest_amounts(run.report)
