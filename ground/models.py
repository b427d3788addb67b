from django.db import models


class RejectedEvent(models.Model):
    """An event refused by the bus (on publish or on consume), kept for inspection."""

    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    topic = models.CharField(max_length=32, blank=True, db_index=True)
    stage = models.CharField(max_length=16, choices=[("publish", "publish"), ("consume", "consume")])
    consumer = models.CharField(max_length=100, blank=True)
    reason = models.TextField()
    payload = models.TextField(help_text="The event as received, verbatim")

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.topic or '?'} rejected at {self.stage}: {self.reason[:60]}"
