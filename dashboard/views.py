"""The dashboard page (login required) and its JSON snapshot (used by the page to resynchronise)."""

from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.defaults import page_not_found

from risk.models import HALT_PERMISSION

from .snapshot import build_snapshot


@never_cache
@login_required
def dashboard(request):
    return render(
        request,
        "dashboard.html",
        {"snapshot": build_snapshot(), "can_halt": request.user.has_perm(HALT_PERMISSION)},
    )


@never_cache
@login_required
def backtests(request, pk: int | None = None):
    """Stored backtest runs (``manage.py backtest --save``); with ``pk`` one run, ``?compare=<id>`` beside another.
    The page reads the runs from /api/backtests/."""
    compare = request.GET.get("compare", "")
    return render(request, "backtests.html", {"run_id": pk or "", "compare_id": compare if compare.isdigit() else ""})


@never_cache
def snapshot(request):
    if not request.user.is_authenticated:
        return JsonResponse({"detail": "Authentication credentials were not provided."}, status=401)
    return JsonResponse(build_snapshot())


def not_found(request, exception=None):
    """404: JSON under /api/ (what API clients parse), Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return page_not_found(request, exception)
