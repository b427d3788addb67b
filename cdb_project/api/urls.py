from django.contrib.auth.decorators import login_required
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import DefaultRouter

from optimize import api as optimize_api

from . import notifications, views

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("orders", views.OrderViewSet, basename="order")
router.register("trades", views.TradeViewSet, basename="trade")
router.register("positions", views.PositionViewSet, basename="position")
router.register("signals", views.SignalViewSet, basename="signal")
router.register("alerts", views.AlertViewSet, basename="alert")
router.register("risk-events", views.RiskEventViewSet, basename="risk-event")
router.register("candles", views.CandleViewSet, basename="candle")
router.register("backtests", views.BacktestRunViewSet, basename="backtest")
router.register("notifications/destinations", notifications.DestinationViewSet, basename="notification-destination")
router.register("notifications", notifications.NotificationViewSet, basename="notification")
router.register("optimizations", optimize_api.OptimizationRunViewSet, basename="optimization")

urlpatterns = [
    path("status/", views.StatusView.as_view(), name="api-status"),
    path("chart/", views.ChartView.as_view(), name="api-chart"),
    path("risk/state/", views.TradingStateView.as_view(), name="api-risk-state"),
    path("risk/parameters/", views.RiskParametersView.as_view(), name="api-risk-parameters"),
    path("risk/halt/", views.HaltView.as_view(), name="api-risk-halt"),
    path("risk/release/", views.ReleaseView.as_view(), name="api-risk-release"),
    path("notifications/test/", notifications.TestMessageView.as_view(), name="api-notify-test"),
    path("notifications/daily-report/", notifications.DailyReportView.as_view(), name="api-notify-daily-report"),
    path("token/", views.TokenView.as_view(), name="api-token"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # A page for a browser: an anonymous visitor is sent to the login page (the schema itself answers 401). The
    # split view serves its start-up script from a URL of its own instead of inline (Content-Security-Policy).
    path("docs/", login_required(SpectacularSwaggerSplitView.as_view(url_name="api-schema")), name="api-docs"),
    path("", views.ApiRootView.as_view(), name="api-root"),
    path("", include(router.urls)),
]

# What GET /api/ lists: every endpoint above and each registered collection (its items are <collection><id>/).
views.ApiRootView.endpoints = {
    **{
        p.name.removeprefix("api-"): f"/api/{p.pattern}"
        for p in urlpatterns
        if getattr(p, "name", None) not in (None, "api-root")
    },
    **{basename + "s": f"/api/{prefix}/" for prefix, _viewset, basename in router.registry},
}
