from django.contrib import admin

from .models import RejectedEvent


@admin.register(RejectedEvent)
class RejectedEventAdmin(admin.ModelAdmin):
    list_display = ("received_at", "topic", "stage", "consumer", "reason")
    list_filter = ("stage", "topic", "received_at")
    search_fields = ("reason", "payload", "consumer")
    readonly_fields = [f.name for f in RejectedEvent._meta.fields]
