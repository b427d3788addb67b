"""REST API views. Lists are paginated (``page``, ``page_size``) and filtered (see filters.py)."""

from decimal import Decimal

from django.db.models import Count, Max, Q, Sum
from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import status as http
from rest_framework import viewsets
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from dashboard import snapshot
from execution.models import Order, Position, Trade
from marketdata.models import Candle
from risk import state as trading_state
from risk.models import Alert, RiskEvent, RiskParameters, TradingState
from risk.parameters_service import update_parameters
from risk.state import outcome_snapshot, state_snapshot
from trading import chart_service
from trading.models import BacktestRun, Signal

from . import filters, serializers
from .authentication import current_token
from .permissions import CanHaltTrading, ReadOrStaffWrite

ERROR_400 = OpenApiResponse(description="Invalid input: the body names each bad field and why")
ERROR_401 = OpenApiResponse(description="No or invalid credentials")
ERROR_403 = OpenApiResponse(description="Authenticated, but without the needed permission")


WIN_RATE_STEP = Decimal("0.000001")  # the share of winning trades, to a millionth


class ReadOnly(viewsets.ReadOnlyModelViewSet):
    permission_classes = [IsAuthenticated]
    filter_backends = [DjangoFilterBackend]


@extend_schema_view(
    list=extend_schema(
        summary="Orders, newest first", responses={200: serializers.OrderSerializer(many=True), 401: ERROR_401}
    ),
)
class OrderViewSet(ReadOnly):
    queryset = Order.objects.order_by("-event_time", "-id")
    serializer_class = serializers.OrderSerializer
    filterset_class = filters.OrderFilter


class TradeViewSet(ReadOnly):
    queryset = Trade.objects.select_related("order", "exit_order").order_by("-entry_time", "-id")
    serializer_class = serializers.TradeSerializer
    filterset_class = filters.TradeFilter

    @extend_schema(
        summary="Totals of the trades the same filters select: count, wins, win rate, P&L and fees",
        responses={200: serializers.TradeTotalsSerializer, 400: ERROR_400, 401: ERROR_401},
    )
    @action(detail=False)
    def totals(self, request):
        trades = self.filter_queryset(self.get_queryset())
        sums = trades.aggregate(
            trades=Count("id"),
            wins=Count("id", filter=Q(profit_loss__gt=0)),
            profit_loss=Sum("profit_loss"),
            entry_fees=Sum("entry_fees"),
            exit_fees=Sum("exit_fees"),
        )
        totals = {
            "trades": sums["trades"],
            "wins": sums["wins"],
            "win_rate": (Decimal(sums["wins"]) / sums["trades"]).quantize(WIN_RATE_STEP) if sums["trades"] else None,
            "profit_loss": sums["profit_loss"] or Decimal(0),
            "fees": (sums["entry_fees"] or Decimal(0)) + (sums["exit_fees"] or Decimal(0)),
        }
        return Response(serializers.TradeTotalsSerializer(totals).data)


class SignalViewSet(ReadOnly):
    queryset = Signal.objects.order_by("-timestamp", "-id")
    serializer_class = serializers.SignalSerializer
    filterset_class = filters.SignalFilter


class AlertViewSet(ReadOnly):
    queryset = Alert.objects.order_by("-created_at", "-id")
    serializer_class = serializers.AlertSerializer
    filterset_class = filters.AlertFilter


class RiskEventViewSet(ReadOnly):
    queryset = RiskEvent.objects.order_by("-created_at", "-id")
    serializer_class = serializers.RiskEventSerializer
    filterset_class = filters.RiskEventFilter


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter(
                "indicators",
                int,
                description="1: add the strategy's indicator lines for this page's candles (needs symbol and "
                "interval): computed by trading/indicators.py, as the decisions are",
            )
        ]
    )
)
class CandleViewSet(ReadOnly):
    """Candles oldest first; ``since`` / ``until`` are open times in epoch ms."""

    queryset = Candle.objects.order_by("symbol", "interval", "timestamp")
    serializer_class = serializers.CandleSerializer
    filterset_class = filters.CandleFilter

    def list(self, request, *args, **kwargs):
        response = super().list(request, *args, **kwargs)
        if request.query_params.get("indicators") not in ("1", "true"):
            return response
        symbol, interval = request.query_params.get("symbol"), request.query_params.get("interval")
        if not symbol or not interval:
            return Response({"indicators": ["needs symbol and interval"]}, status=http.HTTP_400_BAD_REQUEST)
        rows = response.data.get("results", [])
        response.data["indicators"] = chart_service.page_indicators(symbol, interval, [r["timestamp"] for r in rows])
        return response


class BacktestRunViewSet(ReadOnly):
    """Runs stored by ``manage.py backtest --save``, newest first; the detail carries the full report."""

    queryset = BacktestRun.objects.order_by("-created_at", "-id")
    filterset_class = filters.BacktestRunFilter

    @extend_schema(
        summary="A stored run's chart of one symbol: its files' candles, its strategy's indicators, its fills",
        parameters=[OpenApiParameter("symbol", str, required=True)],
        responses={
            200: OpenApiResponse(description="chart data"),
            400: ERROR_400,
            401: ERROR_401,
            404: OpenApiResponse(description="No such run"),
        },
    )
    @action(detail=True)
    def chart(self, request, pk=None):
        run = self.get_object()
        symbol = request.query_params.get("symbol", "")
        if not symbol:
            return Response({"symbol": ["required"]}, status=http.HTTP_400_BAD_REQUEST)
        try:
            return Response(chart_service.backtest_chart(run.report, symbol))
        except FileNotFoundError as error:
            return Response({"symbol": [f"no candles: {error}"]}, status=http.HTTP_400_BAD_REQUEST)

    def get_serializer_class(self):
        if self.action == "retrieve":
            return serializers.BacktestRunDetailSerializer
        return serializers.BacktestRunSerializer


class PositionViewSet(ReadOnly):
    """Open positions with their unrealized profit/loss at the latest close."""

    serializer_class = serializers.PositionSerializer
    filterset_class = filters.PositionFilter
    lookup_field = "symbol"

    def get_queryset(self):
        return Position.objects.filter(quantity__gt=0).order_by("symbol")

    def filter_queryset(self, queryset):
        rows = list(super().filter_queryset(queryset))
        newest = dict(
            Candle.objects.filter(symbol__in=[p.symbol for p in rows])
            .values("symbol")
            .annotate(ts=Max("timestamp"))
            .values_list("symbol", "ts")
        )
        for p in rows:
            ts = newest.get(p.symbol)
            price = (
                Candle.objects.filter(symbol=p.symbol, timestamp=ts).values_list("close", flat=True).first()
                if ts is not None
                else None
            )
            p.price = price
            p.market_value = p.quantity * price if price is not None else None
            p.unrealized_pnl = (price - p.avg_entry_price) * p.quantity if price is not None else None
            cost = p.avg_entry_price * p.quantity
            p.unrealized_pnl_percent = (
                (p.unrealized_pnl / cost * 100).quantize(Decimal("0.000001")) if price is not None and cost else None
            )
        return rows

    def get_object(self):
        from django.http import Http404

        for p in self.filter_queryset(self.get_queryset()):
            if p.symbol == self.kwargs["symbol"]:
                return p
        raise Http404


class ChartView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        summary="One symbol's price chart: candles, the strategy's indicators, fills and open lots' stops",
        parameters=[
            OpenApiParameter("symbol", str, required=True),
            OpenApiParameter("interval", str, description="default: the stored interval; coarser ones resample"),
            OpenApiParameter("until", int, description="newest candle open time (epoch ms); default: the newest"),
            OpenApiParameter("limit", int, description=f"bars, at most {chart_service.MAX_BARS} (default 300)"),
        ],
        responses={200: OpenApiResponse(description="chart data"), 400: ERROR_400, 401: ERROR_401},
    )
    def get(self, request):
        query = serializers.ChartQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        try:
            data = chart_service.chart_data(**query.validated_data)
        except ValueError as error:
            return Response({"interval": [str(error)]}, status=http.HTTP_400_BAD_REQUEST)
        return Response(data)


class ApiRootView(APIView):
    """The API's endpoints by name (``cdb_project/api/urls.py`` fills them in); each is described in the schema."""

    permission_classes = [AllowAny]
    endpoints: dict[str, str] = {}

    @extend_schema(
        summary="The API's endpoints (the OpenAPI schema at /api/schema/ describes each)",
        responses={200: OpenApiResponse(description="{name: path}")},
    )
    def get(self, request):
        return Response(self.endpoints)


@method_decorator(never_cache, name="dispatch")  # Cache-Control: no-store — live state, never from a cache
class StatusView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        summary="Trading state, mode, account, data freshness and service health",
        responses={200: serializers.StatusSerializer, 401: ERROR_401},
    )
    def get(self, request):
        return Response(serializers.StatusSerializer(snapshot.status()).data)


class RiskParametersView(APIView):
    permission_classes = [ReadOrStaffWrite]

    @extend_schema(
        summary="The risk parameters, their sources and ranges",
        responses={200: serializers.RiskParametersSerializer, 401: ERROR_401},
    )
    def get(self, request):
        return Response(serializers.RiskParametersSerializer(RiskParameters.load()).data)

    @extend_schema(
        summary="Change risk parameters (staff); every change is audited",
        request=serializers.RiskParametersSerializer,
        responses={200: serializers.RiskParametersSerializer, 400: ERROR_400, 401: ERROR_401, 403: ERROR_403},
    )
    def patch(self, request):
        serializer = serializers.RiskParametersSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        changes = {k: v for k, v in serializer.validated_data.items() if k != "reason"}
        try:
            params = update_parameters(
                changes, actor=request.user.get_username(), reason=serializer.validated_data.get("reason", "")
            )
        except ValueError as error:
            field = str(error).split(":", 1)[0].upper()
            return Response({field: [str(error)]}, status=http.HTTP_400_BAD_REQUEST)
        return Response(serializers.RiskParametersSerializer(params).data)


class HaltView(APIView):
    permission_classes = [CanHaltTrading]

    @extend_schema(
        summary="Halt trading (needs risk.halt_trading)",
        request=serializers.HaltSerializer,
        responses={200: serializers.StateChangeSerializer, 400: ERROR_400, 401: ERROR_401, 403: ERROR_403},
    )
    def post(self, request):
        serializer = serializers.HaltSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            state = trading_state.halt(
                serializer.validated_data["reason"],
                request.user.get_username(),
                close_positions=serializer.validated_data["close_positions"],
            )
        except ValueError as error:
            return Response({"reason": [str(error)]}, status=http.HTTP_400_BAD_REQUEST)
        return Response(serializers.StateChangeSerializer(outcome_snapshot(state)).data)


class ReleaseView(APIView):
    permission_classes = [CanHaltTrading]

    @extend_schema(
        summary="Release trading back to ACTIVE (needs risk.halt_trading)",
        request=serializers.ReleaseSerializer,
        responses={200: serializers.StateChangeSerializer, 400: ERROR_400, 401: ERROR_401, 403: ERROR_403},
    )
    def post(self, request):
        serializer = serializers.ReleaseSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            state = trading_state.release(serializer.validated_data.get("reason", ""), request.user.get_username())
        except ValueError as error:
            return Response({"reason": [str(error)]}, status=http.HTTP_400_BAD_REQUEST)
        return Response(serializers.StateChangeSerializer(outcome_snapshot(state)).data)


@method_decorator(never_cache, name="dispatch")
class TradingStateView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        summary="The trading state alone", responses={200: serializers.TradingStateSerializer, 401: ERROR_401}
    )
    def get(self, request):
        return Response(serializers.TradingStateSerializer(state_snapshot(TradingState.load())).data)


class TokenView(ObtainAuthToken):
    """username + password → the user's API token (send it as ``Authorization: Token <key>``).

    Throttled like the login forms (django-axes): after LOGIN_FAILURE_LIMIT failures a username is locked out
    from that address for LOGIN_LOCKOUT_MINUTES, even with the right password: 429."""

    serializer_class = serializers.TokenRequestSerializer
    parser_classes = api_settings.DEFAULT_PARSER_CLASSES  # ObtainAuthToken names DRF's own, deep JSON's 500 included

    @extend_schema(
        summary="Exchange a username and password for an API token",
        request=serializers.TokenRequestSerializer,
        responses={
            200: OpenApiResponse(description='{"token": "…"}'),
            400: ERROR_400,
            429: OpenApiResponse(description="Too many failed logins: locked out for a while"),
        },
    )
    def post(self, request, *args, **kwargs):
        try:
            serializer = self.get_serializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            return Response({"token": current_token(serializer.validated_data["user"]).key})
        except ValidationError:
            # Django's authenticate() turns the lockout (axes' backend refusing, or this failure reaching the
            # limit) into a failed login; axes marks the request.
            if getattr(request, "axes_locked_out", False):
                return self._locked_out()
            raise

    @staticmethod
    def _locked_out() -> Response:
        detail = "too many failed logins for this username from this address: try again later"
        return Response({"detail": detail}, status=http.HTTP_429_TOO_MANY_REQUESTS)
