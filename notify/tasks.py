"""Celery tasks of the ``notify`` queue (CELERY_TASK_ROUTES): routing an event, delivering a message with retry and
backoff, flushing a burst's digest, the daily report. A trading worker never runs them."""

from __future__ import annotations

from celery import shared_task

from . import dispatch, service


@shared_task(name="notify.route", acks_late=True, ignore_result=True)
def route(event: dict) -> int:
    """An alert or order_result event (after its commit) → one stored message per destination that takes it."""
    return len(service.route(event))


@shared_task(bind=True, name="notify.deliver", acks_late=True, ignore_result=True, max_retries=100)
def deliver(self, notification_id: int) -> str | None:
    """Send one message; on failure retry with exponential backoff (NOTIFY_RETRY_BACKOFF_SEC doubling up to
    NOTIFY_RETRY_BACKOFF_MAX_SEC) until NOTIFY_MAX_ATTEMPTS, counted in the stored message, then give up (the
    stored count decides, not Celery's ``max_retries``, which only bounds it)."""
    outcome = service.attempt(notification_id)
    if outcome == "retry":
        from .models import Notification

        delay = service.backoff(Notification.objects.values_list("attempts", flat=True).get(pk=notification_id))
        if self.request.is_eager:  # embedded: the background thread waits out the delay
            dispatch.submit(deliver, notification_id, countdown=delay)
        else:
            raise self.retry(countdown=delay)
    return outcome


@shared_task(name="notify.flush_digest", acks_late=True, ignore_result=True)
def flush_digest(digest_id: int) -> None:
    service.flush_digest(digest_id)


@shared_task(name="notify.daily_report", acks_late=True, ignore_result=True)
def daily_report(scheduled: bool = True) -> int:
    """Beat runs this at 00:00 UTC: the report of the day that just ended, once per day and destination."""
    from . import report

    as_of = report.previous_day_end(report.clock.now_ms()) if scheduled else None
    figures = report.daily_report(as_of)
    key = f"daily:{figures['day']}" if scheduled else ""
    return len(service.queue_to_all("daily", service.rules.daily_message(figures), key=key))
