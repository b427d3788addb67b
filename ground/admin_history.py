"""The admin's view of stored history (candles, signals, orders, trades, alerts, risk events, the audit log): what
the system recorded is looked at and searched, never added by hand."""

from django.contrib import admin


class HistoryAdmin(admin.ModelAdmin):
    """No "Add" button and no add view: these rows are written by the system as things happen."""

    def has_add_permission(self, request) -> bool:
        return False


class ReadOnlyHistoryAdmin(HistoryAdmin):
    """History that is evidence (the audit log): neither added, changed nor deleted through the admin."""

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
