"""Settling orders left PENDING by a crash or a lost task (run at worker start-up, every minute and on demand)."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from .live import live_trading_enabled
from .models import Order
from .service import execute_order

logger = logging.getLogger("cdb.execution.reconcile")


def reconcile_pending(older_than_seconds: int | None = None) -> list[Order]:
    """Execute (exactly once, under the usual locks) every PENDING live order older than the timeout. Paper
    orders are not reconciled: each waits for its symbol's next candle, whose price it fills at."""
    if not live_trading_enabled():
        return []
    timeout = settings.PENDING_ORDER_TIMEOUT_SEC if older_than_seconds is None else older_than_seconds
    cutoff = timezone.now() - timedelta(seconds=timeout)
    settled = []
    for client_order_id in Order.objects.filter(status=Order.Status.PENDING, created_at__lte=cutoff).values_list(
        "client_order_id", flat=True
    ):
        order = execute_order({"client_order_id": client_order_id})
        if order is not None:
            logger.warning("reconciled PENDING order %s → %s", client_order_id, order.status)
            settled.append(order)
    return settled
