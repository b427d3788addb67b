"""A refused page answers a plain 403: Django's 403 page and the one log line every 4xx answer gets
(``Forbidden: /admin/trading/signal/add/``), not a WARNING carrying the ``PermissionDenied`` traceback.

A refusal is the permission doing its job (the admin's stored history has no Add, Save or Delete by design), not a
failure to debug; a traceback per refused request buried the log lines that are. The API is unaffected: DRF answers
its own refusals."""

from django.core.exceptions import PermissionDenied
from django.views.defaults import permission_denied


class PlainRefusalMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, PermissionDenied):
            return permission_denied(request, exception)
        return None
