"""Re-driving stored work whose task a broker outage may have lost.

Everything that matters is in PostgreSQL before its task is enqueued (persist before publish), so what a
restarted, empty Redis forgot can be found again:

* a PENDING order (a live order is committed PENDING before it is sent) whose ``on_order`` task was lost →
  executed now (``risk.reconcile``: exactly once, under the usual locks);
* a NEW signal (stored, not yet decided by risk — left by a version that stored a signal before deciding it;
  signals are now stored and decided in one transaction) whose ``on_signal`` task was lost → ``on_signal`` is
  enqueued again with exactly the values the strategy computes for its candle (deciding is idempotent: a signal
  already decided is left alone).

Both are idempotent, so re-driving work that was merely slow changes nothing. The lockstep waiter
(``bus.wait_until_idle``) re-drives everything after an outage; Celery beat re-drives signals that have
stayed NEW for ``SIGNAL_REDRIVE_AFTER_SEC`` (orders: the ``reconcile-pending-orders`` job).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

logger = logging.getLogger("cdb.recovery")

MAX_SIGNALS_PER_RUN = 500


def redrive(older_than_seconds: float = 0, *, orders: bool = True) -> dict[str, int]:
    """Finish stored work older than the given age; returns how many orders and signals were re-driven."""
    from risk.reconcile import reconcile_pending

    settled = reconcile_pending(older_than_seconds=older_than_seconds) if orders else []
    signals = redrive_signals(older_than_seconds)
    if settled or signals:
        logger.warning("re-drove %d PENDING order(s) and %d NEW signal(s)", len(settled), signals)
    return {"orders": len(settled), "signals": signals}


def redrive_signals(older_than_seconds: float = 0) -> int:
    """Enqueue ``on_signal`` again for every signal still NEW (oldest first), with the values it was published with.

    The event is rebuilt the way ``trading.signal_service.process_market_data`` built it: the strategy is evaluated
    again on the stored candles (deterministic), not read back from the row (whose numbers are rounded).
    """
    from ground import bus
    from trading.models import Signal
    from trading.signal_service import evaluate, signal_event, signal_id_for

    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    stale = Signal.objects.filter(status=Signal.Status.NEW, created_at__lte=cutoff).order_by("timestamp", "id")
    count = 0
    for signal in stale[:MAX_SIGNALS_PER_RUN]:
        strategy, emitted, _path = evaluate(settings.STRATEGY, signal.symbol, signal.interval, signal.timestamp)
        if strategy is None or emitted is None:
            logger.error("signal %s: the strategy no longer emits it; left NEW", signal.signal_id)
            continue
        if signal_id_for(signal.symbol, signal.interval, strategy.name, signal.timestamp) != signal.signal_id:
            logger.error("signal %s was made by another strategy than %s; left NEW", signal.signal_id, strategy.name)
            continue
        bus.redeliver(
            signal_event(signal.signal_id, strategy.name, signal.symbol, signal.interval, signal.timestamp, emitted)
        )
        count += 1
    return count


def redrive_stale_signals() -> int:
    """The beat job: signals NEW for longer than ``SIGNAL_REDRIVE_AFTER_SEC``."""
    return redrive_signals(settings.SIGNAL_REDRIVE_AFTER_SEC)
