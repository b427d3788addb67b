from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.urls import path
from django.views.decorators.http import require_POST

from ground.admin_history import QUANTITY, HistoryAdmin, ReadableColumns

from .models import HALT_PERMISSION, Alert, AuditLog, RiskEvent, RiskParameters, TradingState
from .parameters import PARAMETER_SPECS, parameter_text
from .parameters_service import update_parameters
from .state import halt, outcome, release

PARAMETER_FIELDS = [name.lower() for name in PARAMETER_SPECS]


def _parameter_column(name: str):
    def show(obj: RiskParameters) -> str:
        return parameter_text(name, getattr(obj, name.lower()))

    show.short_description = name  # SPEC §4's name, as the README, the environment and risk_status write it
    show.admin_order_field = name.lower()
    return show


class RiskParametersForm(forms.ModelForm):
    reason = forms.CharField(required=False, help_text="Why the change (kept in the audit log)")

    class Meta:
        model = RiskParameters
        fields = PARAMETER_FIELDS

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name, spec in PARAMETER_SPECS.items():
            field = self.fields[name.lower()]
            field.label = name  # SPEC §4's name, as the README, the environment and risk_status write it
            share = " (a fraction: 0.05 = 5 %)" if name.endswith("_PCT") else ""
            field.help_text = f"{spec.description}{share}. Allowed {spec.describe_range()}, default {spec.default}."

    def clean(self):
        cleaned = super().clean()
        for name, spec in PARAMETER_SPECS.items():
            value = cleaned.get(name.lower())
            if value is None:
                continue
            typed = self.data.get(self.add_prefix(name.lower()))  # as typed: Django's fields read "1_0" as 10
            try:
                spec.check(typed if isinstance(typed, str) else value)
            except ValueError as error:
                self.add_error(name.lower(), str(error))
        return cleaned


@admin.register(RiskParameters)
class RiskParametersAdmin(ReadableColumns, admin.ModelAdmin):
    """Edited in place, validated against SPEC §4's ranges; every change audited and effective at once."""

    form = RiskParametersForm
    list_display = (*(_parameter_column(name) for name in PARAMETER_SPECS), "updated_at")
    list_filter = ("updated_at",)
    search_fields = ("id",)

    def changelist_view(self, request, extra_context=None):
        RiskParameters.load()
        return super().changelist_view(request, extra_context)

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        changes = {name: form.cleaned_data[name] for name in form.changed_data if name in PARAMETER_FIELDS}
        update_parameters(changes, actor=request.user.get_username(), reason=form.cleaned_data.get("reason", ""))


@admin.register(TradingState)
class TradingStateAdmin(HistoryAdmin):
    """Read-only; changed only through Halt and Release (staff with the risk.halt_trading permission)."""

    list_display = ("state", "reason", "since", "changed_by", "pause_layer")
    list_filter = ("state",)
    search_fields = ("reason", "changed_by")

    def changelist_view(self, request, extra_context=None):
        state = TradingState.load()
        # the buttons follow the state, as on the dashboard: Halt for ACTIVE and PAUSED (a halt while halted only
        # adds its reason), Release for PAUSED and HALTED
        extra = {
            "can_halt": request.user.has_perm(HALT_PERMISSION),
            "halted": state.state == TradingState.State.HALTED,
            "active": state.state == TradingState.State.ACTIVE,
            **(extra_context or {}),
        }
        return super().changelist_view(request, extra)

    def get_urls(self):
        own = [
            path("halt/", self.admin_site.admin_view(require_POST(self.halt_view)), name="risk_tradingstate_halt"),
            path(
                "release/",
                self.admin_site.admin_view(require_POST(self.release_view)),
                name="risk_tradingstate_release",
            ),
        ]
        return own + super().get_urls()

    def _act(self, request, action):
        if not request.user.has_perm(HALT_PERMISSION):
            raise PermissionDenied("halting and releasing need the risk.halt_trading permission")
        try:
            state = action(request.POST.get("reason", ""), request.user.get_username())
        except ValueError as error:
            self.message_user(request, str(error), messages.ERROR)
        else:
            self.message_user(request, outcome(state), messages.WARNING if state.already else messages.SUCCESS)
        return redirect("admin:risk_tradingstate_changelist")

    def halt_view(self, request):
        close = request.POST.get("close_positions") == "on"
        return self._act(request, lambda reason, actor: halt(reason, actor, close_positions=close))

    def release_view(self, request):
        return self._act(request, release)


@admin.register(RiskEvent)
class RiskEventAdmin(HistoryAdmin):
    list_display = ("created_at", "decision", "layer", "symbol", "requested_quantity", "approved_quantity", "reason")
    list_filter = ("decision", "layer", "symbol", "created_at")
    search_fields = ("reason", "signal_id", "client_order_id", "symbol")
    amounts = {"requested_quantity": QUANTITY, "approved_quantity": QUANTITY}


@admin.register(Alert)
class AlertAdmin(HistoryAdmin):
    list_display = ("created_at", "level", "code", "symbol", "message")
    list_filter = ("level", "code", "created_at")
    search_fields = ("message", "code", "symbol")


@admin.register(AuditLog)
class AuditLogAdmin(HistoryAdmin):
    list_display = ("created_at", "actor", "action", "target", "old_value", "new_value", "reason")
    list_filter = ("action", "actor", "created_at")
    search_fields = ("actor", "action", "target", "reason")
