from django.contrib import admin

from .admin_history import HistoryAdmin
from .models import RejectedEvent


@admin.register(RejectedEvent)
class RejectedEventAdmin(HistoryAdmin):
    list_display = ("received_at", "topic", "stage", "consumer", "reason")
    list_filter = ("stage", "topic", "received_at")
    search_fields = ("reason", "payload", "consumer")
