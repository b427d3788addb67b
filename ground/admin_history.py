"""The admin's view of what the system records (candles, signals, orders, trades, positions, the book, alerts, risk
events, the audit log, the clock, data freshness, rejected events, run results): looked at and searched, never
added, changed or deleted by hand — a hand-edited row would be evidence that no longer matches what happened.

What an operator does edit keeps a plain ``ModelAdmin``: risk parameters, notification destinations, users."""

from django.contrib import admin


class ViewOnly:
    """Permissions that let a row be looked at and nothing else: no add, no change (Django's view-only form, no
    Save), no delete."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class HistoryAdmin(ViewOnly, admin.ModelAdmin):
    """No "Add", no "Delete", and a change page that only shows the row."""


class HistoryInline(ViewOnly, admin.TabularInline):
    """The rows of a recorded parent, shown with it and as read-only as it."""

    extra = 0
    can_delete = False
