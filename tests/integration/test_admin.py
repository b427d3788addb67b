"""Every model is in the admin, with list filters and search that work."""

from importlib import import_module

import pytest
from django.apps import apps
from django.conf import settings
from django.contrib import admin
from django.urls import reverse

from ground import bus
from tests.support import series

pytestmark = pytest.mark.django_db(transaction=True)
APPS = ("cdb_project", "marketdata", "trading", "risk", "execution")


# Bookkeeping of the database itself, not an operator's data: the account version counter kept by triggers.
NOT_IN_THE_ADMIN = {("risk", "accountversion")}


def _models():
    return [
        model
        for label in APPS
        for model in apps.get_app_config(label).get_models()
        if (model._meta.app_label, model._meta.model_name) not in NOT_IN_THE_ADMIN
    ]


def test_every_model_is_registered_with_filters_and_search():
    import_module(settings.ROOT_URLCONF)  # the site as served: urls.py imports every admin.py (not django.setup())
    for model in _models():
        model_admin = admin.site._registry.get(model)
        assert model_admin is not None, f"{model.__name__} is not in the admin"
        assert model_admin.list_filter and model_admin.search_fields, model.__name__


def test_changelists_render_with_data_filters_and_search(admin_client, sma_cross):
    series.publish_all(series.events())
    with pytest.raises(bus.InvalidEvent):
        bus.publish({"type": "market_data", "price": "x"})
    for model in _models():
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        assert admin_client.get(url).status_code == 200, url
        assert admin_client.get(url, {"q": "TEST"}).status_code == 200, url
    page = admin_client.get(reverse("admin:cdb_project_rejectedevent_changelist")).content.decode()
    assert "market_data" in page and "price" in page
    filtered = admin_client.get(reverse("admin:execution_order_changelist"), {"status__exact": "FILLED"})
    assert "TEST_USDT" in filtered.content.decode()


# What an operator edits in the admin, with what it may do there; everything else registered is what the system
# records (history, the book, the clock, run results) and is read only: no add, no change, no delete.
OPERATOR_EDITS = {
    "auth.user": {"add", "change", "delete"},
    "auth.group": {"add", "change", "delete"},
    "authtoken.tokenproxy": {"add", "change", "delete"},  # DRF's own admin of API tokens
    "risk.riskparameters": {"change"},  # one row, range-checked and audited
    "notify.destination": {"add", "change", "delete"},  # notification rules
    # django-axes' own admin: every field read only ("change" saves nothing); deleting a lock-out lifts it
    "axes.accessattempt": {"change", "delete"},
    "axes.accesslog": {"change", "delete"},
    "axes.accessfailurelog": {"change", "delete"},
}


def _seed_one_of_each_record() -> None:
    """At least one row of every recorded model: the pipeline's through the real bus (a trade opened and closed by
    a halt's close, a rejected event, the screener), the rest as their writers store them."""
    from django.utils import timezone

    from execution.models import BalanceCheck
    from marketdata.models import MarketClock, StaleWatchState
    from marketdata.stale import touch
    from marketdata.watchlist import register_feed_symbols, run_screener
    from notify.models import Notification
    from optimize.models import OptimizationRun
    from risk import state
    from trading.models import BacktestRun

    series.publish_all(series.filled_events())
    with pytest.raises(bus.InvalidEvent):
        bus.publish({"type": "market_data", "price": "x"})
    register_feed_symbols(["TEST_USDT"], "replay")
    run_screener(series.BASE_TS + 26 * series.STEP_MS)
    state.halt("admin walk", "tester")
    MarketClock.objects.get_or_create(pk=1)
    touch("TEST_USDT", series.BASE_TS + 27 * series.STEP_MS)
    StaleWatchState.load()
    BalanceCheck.objects.create(checked_at=timezone.now(), detail="paper: nothing to compare")
    Notification.objects.create(destination_name="ops", topic="test", title="test message")
    BacktestRun.objects.create(
        strategy="sma_cross", initial_capital=1000, final_equity=1001, total_return_pct=0.1, candles=27, report={}
    )
    OptimizationRun.objects.create(study="walk", strategy="sma_cross", objective="sharpe", trials=1, report={})


def test_every_registered_admin_lets_the_operator_edit_only_what_is_theirs(admin_client, sma_cross):
    """Walks every model in the admin: stored history has no Add, no Save on its change page (a POST is refused),
    no Delete; what an operator edits keeps its buttons."""
    _seed_one_of_each_record()
    request = admin_client.get(reverse("admin:index")).wsgi_request
    index = admin_client.get(reverse("admin:index")).content.decode()
    records_seen = 0
    for model, model_admin in admin.site._registry.items():
        label = model._meta.label_lower
        allowed = OPERATOR_EDITS.get(label, set())
        granted = {
            "add": model_admin.has_add_permission(request),
            "change": model_admin.has_change_permission(request),
            "delete": model_admin.has_delete_permission(request),
        }
        assert {what for what, yes in granted.items() if yes} == allowed, label
        assert model_admin.has_view_permission(request), label
        prefix = f"admin:{model._meta.app_label}_{model._meta.model_name}"
        add = reverse(f"{prefix}_add")
        assert (f'href="{add}"' in index) == ("add" in allowed), label
        if "add" not in allowed:
            assert admin_client.get(add).status_code == 403, label
        row = model._default_manager.order_by("pk").first()
        if label in OPERATOR_EDITS:
            continue
        assert row is not None, f"no {label} row to look at"
        records_seen += 1
        change = reverse(f"{prefix}_change", args=[row.pk])
        page = admin_client.get(change)
        assert page.status_code == 200, label
        body = page.content.decode()
        assert 'name="_save"' not in body and "deletelink" not in body, label  # a view, not a form
        assert admin_client.post(change, {}).status_code == 403, label
        assert admin_client.get(reverse(f"{prefix}_delete", args=[row.pk])).status_code == 403, label
        changelist = admin_client.get(reverse(f"{prefix}_changelist")).content.decode()
        assert "action-checkbox" not in changelist, label  # no "delete selected"
        for inline in model_admin.get_inline_instances(request, row):
            assert not inline.has_add_permission(request, row) and not inline.has_delete_permission(request, row)
            assert not inline.has_change_permission(request, row), label
    assert records_seen >= 20


def test_admin_names_read_right(admin_client):
    index = admin_client.get(reverse("admin:index")).content.decode()
    for name in ("Candle series", "Data freshness", "Watch list entries", "Market clock", "Trading state"):
        assert f">{name}<" in index, name
    assert "seriess" not in index and "freshnesss" not in index and "entrys" not in index
    assert "clocks" not in index and "Trading states" not in index and "Portfolios" not in index
    assert "Stale-data watch<" in index


def test_a_refused_admin_page_is_a_plain_403_with_one_log_line(admin_client, caplog):
    """Adding stored history by hand is refused by design: a 403 with one ``Forbidden`` line, no traceback (each
    refusal logged a WARNING with the PermissionDenied traceback)."""
    from risk.models import TradingState

    TradingState.load()
    refused = [
        ("get", reverse("admin:trading_signal_add")),
        ("get", reverse("admin:execution_order_add")),
        ("get", reverse("admin:axes_accessattempt_add")),
        ("post", reverse("admin:risk_tradingstate_change", args=[TradingState.load().pk])),
        ("get", reverse("admin:risk_tradingstate_delete", args=[TradingState.load().pk])),
    ]
    for method, url in refused:
        caplog.clear()
        with caplog.at_level("INFO", logger="django.request"):
            assert getattr(admin_client, method)(url).status_code == 403, url
        lines = [r for r in caplog.records if r.name == "django.request"]
        assert [r.getMessage() for r in lines] == [f"Forbidden: {url}"], url
        assert all(r.exc_info is None and r.levelname == "WARNING" for r in lines), url
