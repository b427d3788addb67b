"""Who may do what. Halt / release: the ``risk.halt_trading`` permission (the same rule as the dashboard buttons
and the websocket; superusers have every permission). Risk parameters: staff with ``risk.change_riskparameters``.
"""

from rest_framework.permissions import SAFE_METHODS, BasePermission

from risk.models import HALT_PERMISSION

PARAMETERS_PERMISSION = "risk.change_riskparameters"


class CanHaltTrading(BasePermission):
    message = f"Halting and releasing trading needs the {HALT_PERMISSION} permission."

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.has_perm(HALT_PERMISSION))


class ReadOrStaffWrite(BasePermission):
    """Any authenticated user reads; writing needs staff status and the change permission."""

    message = f"Changing risk parameters needs a staff account with the {PARAMETERS_PERMISSION} permission."

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        if request.method in SAFE_METHODS:
            return True
        return bool(user.is_staff and user.has_perm(PARAMETERS_PERMISSION))
