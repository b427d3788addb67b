from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView

from cdb_project import ops
from dashboard import views as dashboard_views

admin.autodiscover()  # every app's admin.py: not at django.setup() (cdb_project/admin_app.py)
admin.site.site_header = "Claire de Binare"
admin.site.site_title = "Claire de Binare admin"
# No navigation sidebar (the index and the breadcrumbs lead everywhere): at 1280 px it left the lists 631 px, and
# orders, trades, risk events and candles scrolled sideways in their box (issue 22's review, measured in Chromium).
admin.site.enable_nav_sidebar = False

handler404 = "dashboard.views.not_found"

urlpatterns = [
    path("", dashboard_views.dashboard, name="dashboard"),
    path("backtests/", dashboard_views.backtests, name="backtests"),
    path("backtests/<int:pk>/", dashboard_views.backtests, name="backtest-detail"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/password_change/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path("accounts/password_change/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
    path("api/dashboard/snapshot/", dashboard_views.snapshot, name="dashboard-snapshot"),
    path("api/", include("cdb_project.api.urls")),
    path("admin/", admin.site.urls),
    path("health", ops.health, name="health"),
    path("metrics", ops.metrics, name="metrics"),
    # pages that name no icon (the API's, a browser's own guess) get the dashboard's
    path("favicon.ico", RedirectView.as_view(url=static("cdb/favicon.svg"), permanent=True), name="favicon"),
]

if settings.EMAIL_CONFIGURED:  # password reset by mail only when mail can be sent (EMAIL_URL)
    urlpatterns.append(path("accounts/", include("django.contrib.auth.urls")))
