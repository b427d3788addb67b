"""Admin: destinations (URL masked, replaced only by typing a new one; test and daily-report actions) and every
notification (read-only, filtered), with a *Send daily report now* button."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.urls import path
from django.views.decorators.http import require_POST

from ground.admin_history import HistoryAdmin, ReadableColumns
from ground.amounts import counted

from . import rules, service
from .models import SEND_PERMISSION, Destination, Notification


class DestinationForm(forms.ModelForm):
    new_url = forms.CharField(
        required=False,
        label="Apprise URL",
        widget=forms.PasswordInput(render_value=False, attrs={"size": 80, "autocomplete": "off"}),
        help_text="e.g. tgram://TOKEN/CHAT, json://host/path, mailtos://user:pass@host?to=ops@example.com. "
        "Never shown again (see the masked URL); leave blank to keep the current one. "
        "level= and topics= in the URL override the fields below.",
    )
    topics = forms.MultipleChoiceField(
        choices=[(t, t) for t in rules.TOPICS], widget=forms.CheckboxSelectMultiple, initial=list(rules.DEFAULT_TOPICS)
    )

    class Meta:
        model = Destination
        fields = ["name", "new_url", "level", "topics", "enabled"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["name"].required = False
        self.fields["name"].help_text = "Label in the admin, logs and metrics (default: the masked URL)"
        self.described = None

    def clean(self):
        cleaned = super().clean()
        raw = (cleaned.get("new_url") or "").strip()
        if not raw:
            if not self.instance.pk:
                self.add_error("new_url", "A destination needs a URL.")
            return cleaned
        try:
            spec, self.described = service.describe(raw)
        except ValueError as error:
            self.add_error("new_url", str(error))  # never echoes the URL
            return cleaned
        own = rules.own_parameters(raw)
        if "level" in own:
            cleaned["level"] = spec.level
        if "topics" in own:
            cleaned["topics"] = list(spec.topics)
        cleaned["url"] = spec.url
        return cleaned

    def save(self, commit=True):
        destination = super().save(commit=False)
        destination.topics = list(self.cleaned_data["topics"])
        if self.described is not None:
            destination.url, destination.masked_url = self.cleaned_data["url"], self.described.masked
            destination.consecutive_failures, destination.last_error = 0, ""
        if not destination.name:
            destination.name = service.unique_name(service.default_name(destination.masked_url), destination.pk)
        if commit:
            destination.save()
        return destination


@admin.register(Destination)
class DestinationAdmin(ReadableColumns, admin.ModelAdmin):
    form = DestinationForm
    list_display = (
        "name",
        "masked_url",
        "level",
        "topics",
        "enabled",
        "source",
        "consecutive_failures",
        "last_success_at",
        "last_failure_at",
    )
    list_filter = ("enabled", "level", "source")
    search_fields = ("name", "masked_url")
    readonly_fields = (
        "masked_url",
        "source",
        "consecutive_failures",
        "last_error",
        "last_success_at",
        "last_failure_at",
    )
    actions = ["send_test", "send_daily_report"]

    def get_fields(self, request, obj=None):
        fields = ["name", "new_url", "level", "topics", "enabled"]
        shown = [self.readable(name) for name in self.readonly_fields]  # times in ISO 8601 UTC, as get_readonly_fields
        return [shown[0], *fields, *shown[1:]] if obj else fields

    @admin.action(description="Send a test message to the selected destinations", permissions=["send"])
    def send_test(self, request, queryset):
        queued = service.queue_to_all(Notification.Topic.TEST, service.test_notice(), only=list(queryset))
        self.message_user(request, f"Test message queued for {counted(len(queued), 'destination')}.", messages.SUCCESS)

    @admin.action(description="Send the daily report now to the selected destinations", permissions=["send"])
    def send_daily_report(self, request, queryset):
        from .report import daily_report

        message = rules.daily_message(daily_report())
        queued = service.queue_to_all(Notification.Topic.DAILY, message, only=list(queryset.filter(enabled=True)))
        self.message_user(request, f"Daily report queued for {counted(len(queued), 'destination')}.", messages.SUCCESS)

    def has_send_permission(self, request):
        return request.user.has_perm(SEND_PERMISSION)


@admin.register(Notification)
class NotificationAdmin(HistoryAdmin):
    """Every message, sent or failed or coalesced into a digest. Read-only."""

    list_display = ("created_at", "destination_name", "topic", "level", "title", "status", "attempts", "sent_at")
    list_filter = ("status", "topic", "level", "destination_name", "created_at")
    search_fields = ("title", "body", "destination_name", "error")
    date_hierarchy = "created_at"
    list_select_related = False

    def changelist_view(self, request, extra_context=None):
        extra = {"can_send": request.user.has_perm(SEND_PERMISSION), **(extra_context or {})}
        return super().changelist_view(request, extra)

    def get_urls(self):
        own = [
            path(
                "daily-report/",
                self.admin_site.admin_view(require_POST(self.daily_report_view)),
                name="notify_notification_daily_report",
            ),
        ]
        return own + super().get_urls()

    def daily_report_view(self, request):
        if not request.user.has_perm(SEND_PERMISSION):
            raise PermissionDenied(f"sending needs the {SEND_PERMISSION} permission")
        from .tasks import daily_report

        queued = daily_report(scheduled=False)
        self.message_user(request, f"Daily report queued for {counted(queued, 'destination')}.", messages.SUCCESS)
        return redirect("admin:notify_notification_changelist")
