"""The notification shell: seed destinations, turn events into stored messages, coalesce bursts, deliver.

Everything here runs in a notify task (queue ``notify``) or a management command, never in the trading path:
``notify.hooks.observe`` only hands the event to ``notify.route``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from ground import amounts
from ground.logging import redact, register_secrets

from . import rules, sender
from .metrics import notifications_sent_total
from .models import Destination, Notification

logger = logging.getLogger("cdb.notify")

BURST_TOPICS = (Notification.Topic.ALERTS, Notification.Topic.FILLS, Notification.Topic.DIGEST)
PENDING = (Notification.Status.QUEUED, Notification.Status.RETRYING)


# --- destinations ------------------------------------------------------------------------------------------------


def describe(raw_url: str) -> tuple[rules.DestinationSpec, sender.Described]:
    """Parse our parameters off and let Apprise load and mask the rest; ValueError never quotes the URL."""
    spec = rules.parse_destination(raw_url)
    return spec, sender.describe(spec.url)


def unique_name(base: str, exclude_pk: int | None = None) -> str:
    base = base[:110] or "destination"
    name, n = base, 1
    while Destination.objects.filter(name=name).exclude(pk=exclude_pk).exists():
        n += 1
        name = f"{base} #{n}"
    return name


def default_name(masked: str) -> str:
    """The masked URL without its query: ``tgram://1...u/-100123456``."""
    return masked.split("?", 1)[0].rstrip("/")


def seed_from_env(text: str | None = None) -> list[Destination]:
    """Create a destination for every NOTIFY_URLS entry not stored yet (matched by URL); stored ones, edited in
    the admin or not, are left alone. An entry Apprise cannot load is logged (masked) and skipped."""
    created = []
    for index, raw in enumerate(rules.split_urls(settings.NOTIFY_URLS if text is None else text), start=1):
        try:
            spec, described = describe(raw)
        except ValueError as error:
            logger.warning("NOTIFY_URLS entry %d skipped: %s", index, error)
            continue
        register_secrets(described.secrets)
        if Destination.objects.filter(url=spec.url).exists():
            continue
        created.append(
            Destination.objects.create(
                name=unique_name(default_name(described.masked)),
                url=spec.url,
                masked_url=described.masked,
                level=spec.level,
                topics=list(spec.topics),
                source=Destination.Source.ENV,
            )
        )
    return created


def secrets_of(destination: Destination) -> frozenset[str]:
    try:
        secrets = sender.describe(destination.url).secrets
    except ValueError:
        secrets = frozenset(rules.secret_pieces(destination.url, destination.masked_url))
    register_secrets(secrets)
    return secrets


def enabled_destinations() -> list[Destination]:
    return list(Destination.objects.filter(enabled=True))


# --- events → messages -------------------------------------------------------------------------------------------


def event_key(event: dict) -> str:
    if event["type"] == "order_result":
        raw = f"fill:{event['client_order_id']}:{event['status']}:{event['filled_quantity']}"
    else:
        raw = json.dumps(event, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()[:40]


def _exit_pnl(client_order_id: str) -> tuple[Decimal | None, Decimal | None]:
    """Realized P&L (and % of the entry cost) of the trades this fill closed; (None, None) for an entry."""
    from execution.models import Trade

    closed = list(
        Trade.objects.filter(exit_order__client_order_id=client_order_id, profit_loss__isnull=False).values_list(
            "profit_loss", "entry_price", "quantity"
        )
    )
    if not closed:
        return None, None
    pnl = sum((row[0] for row in closed), start=Decimal(0))
    cost = sum((row[1] * row[2] for row in closed), start=Decimal(0))
    return pnl, (pnl / cost if cost else None)  # a fraction of the closed lots' cost


def message_for(event: dict) -> tuple[str, rules.Message] | None:
    """(topic, message) for an alert or a fill; None for anything else."""
    wanted = rules.event_topic(event)
    if wanted is None:
        return None
    if wanted[0] == "alerts":
        return "alerts", rules.alert_message(event)
    pnl, fraction = _exit_pnl(event["client_order_id"]) if event.get("side") == "SELL" else (None, None)
    return "fills", rules.fill_message(event, pnl, fraction)


def route(event: dict) -> list[Notification]:
    """Store a message for every enabled destination that takes this event (once per event and destination) and
    queue its delivery — or, in a burst, coalesce it into the destination's digest."""
    found = message_for(event)
    if found is None:
        return []
    topic, message = found
    key = event_key(event)
    out = []
    for destination in enabled_destinations():
        if rules.admits(destination.level, destination.topic_list(), topic, message.level):
            stored = _queue(destination, topic, message, key=key, event_time=event.get("timestamp"))
            if stored is not None:
                out.append(stored)
    return out


def _queue(
    destination: Destination,
    topic: str,
    message: rules.Message,
    *,
    key: str = "",
    event_time: int | None = None,
    schedule: bool = True,
) -> Notification | None:
    from . import dispatch

    window = float(settings.NOTIFY_BURST_WINDOW_SEC)
    with transaction.atomic():
        locked = Destination.objects.select_for_update().get(pk=destination.pk)
        if key and Notification.objects.filter(destination=locked, event_key=key).exists():
            return None  # a redelivered event
        fields = dict(
            destination=locked,
            destination_name=locked.name,
            topic=topic,
            level=message.level,
            title=message.title[:250],
            body=message.body,
            event_key=key,
            event_time=event_time,
        )
        now = timezone.now()
        # Each topic has its own allowance (a run of fills does not fold the next halt into a digest); a digest
        # sent counts for both.
        recent = (
            Notification.objects.filter(
                destination=locked,
                topic__in=(topic, Notification.Topic.DIGEST),
                created_at__gte=now - timedelta(seconds=window),
            )
            .exclude(status__in=[Notification.Status.COALESCED, Notification.Status.COLLECTING])
            .count()
        )
        if topic in BURST_TOPICS and rules.coalesce(recent, int(settings.NOTIFY_BURST_LIMIT)):
            digest = Notification.objects.filter(destination=locked, status=Notification.Status.COLLECTING).first()
            if digest is None:
                digest = Notification.objects.create(
                    destination=locked,
                    destination_name=locked.name,
                    topic=Notification.Topic.DIGEST,
                    title="(collecting)",
                    status=Notification.Status.COLLECTING,
                )
                transaction.on_commit(
                    lambda: dispatch.submit(_task("notify.flush_digest"), digest.pk, countdown=window)
                )
            elif digest.created_at < now - timedelta(seconds=2 * window):  # its flush was lost: send it now
                transaction.on_commit(lambda: dispatch.submit(_task("notify.flush_digest"), digest.pk))
            return Notification.objects.create(status=Notification.Status.COALESCED, digest=digest, **fields)
        stored = Notification.objects.create(status=Notification.Status.QUEUED, **fields)
        if schedule:
            transaction.on_commit(lambda: dispatch.submit(_task("notify.deliver"), stored.pk))
        return stored


def _task(name: str):
    """A task of notify.tasks, found by its name in the Celery app (notify.tasks imports this module): the app
    imports notify.tasks as it is finalized, by this very lookup at the latest (cdb_project/celery.py)."""
    from celery import current_app

    return current_app.tasks[name]


def flush_digest(digest_id: int) -> Notification | None:
    """Close a collecting digest: its text lists every coalesced message; then it is delivered like any other."""
    from . import dispatch

    with transaction.atomic():
        # The destination's lock first, as _queue takes it: no message joins the digest while its text is made.
        destination_id = Notification.objects.filter(pk=digest_id).values_list("destination_id", flat=True).first()
        list(Destination.objects.select_for_update().filter(pk=destination_id))
        digest = Notification.objects.select_for_update().filter(pk=digest_id).first()
        if digest is None or digest.status != Notification.Status.COLLECTING:
            return None
        items = [
            (title, body.split("\n", 1)[0]) for title, body in digest.items.order_by("id").values_list("title", "body")
        ]
        message = rules.digest_message(items, float(settings.NOTIFY_BURST_WINDOW_SEC))
        digest.title, digest.body, digest.level = message.title[:250], message.body, message.level
        digest.status = Notification.Status.QUEUED
        digest.save(update_fields=["title", "body", "level", "status"])
        transaction.on_commit(lambda: dispatch.submit(_task("notify.deliver"), digest.pk))
    return digest


def queue_to_all(
    topic: str, message: rules.Message, *, key: str = "", only=None, schedule: bool = True
) -> list[Notification]:
    """A daily report or a test message for every enabled destination (``only``: these destinations) that takes
    it; tests go to all. Not coalesced: one each. ``schedule=False``: stored only, the caller sends them."""
    out = []
    for destination in only if only is not None else enabled_destinations():
        if topic == Notification.Topic.TEST or rules.admits(destination.level, destination.topic_list(), topic):
            stored = _queue(destination, topic, message, key=key, schedule=schedule)
            if stored is not None:
                out.append(stored)
    return out


def test_notice() -> rules.Message:
    return rules.Message(
        title="Claire de Binare: test message",
        body=f"Notifications reach this destination. Sent {amounts.iso_utc(int(timezone.now().timestamp() * 1000))}.",
    )


# --- delivery ----------------------------------------------------------------------------------------------------


def attempt(notification_id: int, *, max_attempts: int | None = None) -> str | None:
    """Try to send a queued message once: "sent", "retry" (try again later) or "failed" (given up); None when
    there is nothing to send (already sent, destination gone or disabled)."""
    max_attempts = int(settings.NOTIFY_MAX_ATTEMPTS) if max_attempts is None else max_attempts
    notification = Notification.objects.select_related("destination").filter(pk=notification_id).first()
    if notification is None or notification.status not in PENDING:
        return None
    destination = notification.destination
    if destination is None or not destination.enabled:
        notification.status, notification.error = Notification.Status.FAILED, "destination removed or disabled"
        notification.save(update_fields=["status", "error"])
        return None
    secrets = sorted(secrets_of(destination), key=len, reverse=True)
    ok, error = sender.send(
        destination.url, notification.title, notification.body, notification.level, float(settings.NOTIFY_TIMEOUT_SEC)
    )
    error = redact(error, secrets)[:2000]
    now = timezone.now()
    notification.attempts += 1
    if ok:
        notification.status, notification.sent_at, notification.error = Notification.Status.SENT, now, ""
        Destination.objects.filter(pk=destination.pk).update(consecutive_failures=0, last_success_at=now)
        outcome = "sent"
    elif notification.attempts < max_attempts:
        notification.status, notification.error = Notification.Status.RETRYING, error
        logger.warning(
            "notification %s to %s failed (attempt %d of %d): %s",
            notification.pk,
            destination.name,
            notification.attempts,
            max_attempts,
            error,
        )
        outcome = "retry"
    else:
        notification.status, notification.error = Notification.Status.FAILED, error
        Destination.objects.filter(pk=destination.pk).update(
            consecutive_failures=F("consecutive_failures") + 1, last_error=error, last_failure_at=now
        )
        logger.error(
            "notification %s to %s given up after %d attempts: %s",
            notification.pk,
            destination.name,
            notification.attempts,
            error,
        )
        outcome = "failed"
    notification.save(update_fields=["status", "sent_at", "error", "attempts"])
    notifications_sent_total.labels(
        destination=destination.name, result={"retry": "retried"}.get(outcome, outcome)
    ).inc()
    return outcome


def backoff(attempts: int) -> float:
    return rules.retry_delay(
        max(0, attempts - 1), float(settings.NOTIFY_RETRY_BACKOFF_SEC), float(settings.NOTIFY_RETRY_BACKOFF_MAX_SEC)
    )


# --- health ------------------------------------------------------------------------------------------------------


def health() -> dict | None:
    """The dashboard's health-card line: destinations whose last message was given up on are DOWN (None: no
    destination, no line)."""
    destinations = list(Destination.objects.filter(enabled=True).order_by("name"))
    if not destinations:
        return None
    failing = [d for d in destinations if d.consecutive_failures]
    if not failing:
        return {"ok": True, "detail": f"{amounts.counted(len(destinations), 'destination')} delivering"}
    parts = [
        f"{d.name}: {amounts.counted(d.consecutive_failures, 'message')} failed ({_last_line(d.last_error)})"
        for d in failing
    ]
    return {"ok": False, "detail": "; ".join(parts)}


def _last_line(text: str) -> str:
    lines = (text or "").strip().splitlines()
    return lines[-1][:120] if lines else "no detail"
