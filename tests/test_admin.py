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


def _models():
    return [model for label in APPS for model in apps.get_app_config(label).get_models()]


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


def test_stored_history_has_no_add_and_names_read_right(admin_client):
    history = ["candle", "signal", "order", "trade", "alert", "riskevent", "auditlog"]
    index = admin_client.get(reverse("admin:index")).content.decode()
    for model in _models():
        name = model._meta.model_name
        add = reverse(f"admin:{model._meta.app_label}_{name}_add")
        if name in history:
            assert admin_client.get(add).status_code == 403, name  # stored as things happen, never by hand
            assert f'href="{add}"' not in index, name
    assert "Candle series" in index and "Data freshness" in index and "Watch list entries" in index
    assert "seriess" not in index and "freshnesss" not in index and "entrys" not in index
    audit = reverse("admin:risk_auditlog_changelist")
    assert "action-checkbox" not in admin_client.get(audit).content.decode()  # no delete action on the evidence
