"""Destinations (Apprise URLs, stored with their secrets, shown masked) and every notification sent or not."""

from __future__ import annotations

from django.db import models

from .rules import DEFAULT_LEVEL, DEFAULT_TOPICS, LEVELS

LEVEL_CHOICES = [(level, level) for level in LEVELS]
SEND_PERMISSION = "notify.send_notifications"  # test message and daily report on demand (admin, API)


class Destination(models.Model):
    """Where notifications go. ``url`` holds the secret (token, password): it is never shown, logged or served;
    ``masked_url`` (Apprise's privacy form) is."""

    class Source(models.TextChoices):
        ENV = "env", "NOTIFY_URLS"
        ADMIN = "admin"

    name = models.CharField(max_length=120, unique=True, help_text="Label in the admin, logs and metrics")
    url = models.TextField(help_text="Apprise URL (secret), without level/topics")
    masked_url = models.TextField(editable=False, help_text="The URL with its secrets masked")
    level = models.CharField(
        max_length=8, choices=LEVEL_CHOICES, default=DEFAULT_LEVEL, help_text="Minimum alert level"
    )
    topics = models.JSONField(default=list, help_text="alerts, fills, daily")
    enabled = models.BooleanField(default=True)
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.ADMIN)
    consecutive_failures = models.PositiveIntegerField(
        default=0, help_text="Messages given up on since the last success"
    )
    last_error = models.TextField(blank=True, help_text="Masked")
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def topic_list(self) -> tuple[str, ...]:
        return tuple(self.topics or DEFAULT_TOPICS)


class Notification(models.Model):
    """One message to one destination: sent, failed, waiting, or coalesced into a digest (``digest``)."""

    class Topic(models.TextChoices):
        ALERTS = "alerts"
        FILLS = "fills"
        DAILY = "daily"
        TEST = "test"
        DIGEST = "digest", "digest (coalesced burst)"

    class Status(models.TextChoices):
        QUEUED = "QUEUED"
        RETRYING = "RETRYING"
        SENT = "SENT"
        FAILED = "FAILED"
        COLLECTING = "COLLECTING", "collecting (digest not sent yet)"
        COALESCED = "COALESCED", "coalesced into a digest"

    destination = models.ForeignKey(Destination, on_delete=models.SET_NULL, null=True, related_name="notifications")
    destination_name = models.CharField(max_length=120, db_index=True)
    topic = models.CharField(max_length=8, choices=Topic.choices, db_index=True)
    level = models.CharField(max_length=8, choices=LEVEL_CHOICES, default="INFO")
    title = models.CharField(max_length=250)
    body = models.TextField(blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True, help_text="Last delivery error, secrets masked")
    event_key = models.CharField(max_length=64, blank=True, help_text="The event's fingerprint: one message each")
    event_time = models.BigIntegerField(null=True, blank=True, help_text="Event time, epoch ms")
    digest = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True, related_name="items")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("send_notifications", "Can send test messages and the daily report on demand")]
        constraints = [
            models.UniqueConstraint(
                fields=["destination", "event_key"],
                condition=~models.Q(event_key=""),
                name="notify_one_message_per_event_and_destination",
            )
        ]
        indexes = [models.Index(fields=["destination", "created_at"])]

    def __str__(self) -> str:
        return f"{self.destination_name}: {self.title} [{self.status}]"
