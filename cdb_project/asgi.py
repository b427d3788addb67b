"""ASGI entry point: Django for HTTP (static files included), Channels for the dashboard websocket."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cdb_project.settings")
os.environ.setdefault("CDB_PROCESS", "web")  # settings: no persistent database connections in the web process
django_asgi_app = get_asgi_application()

# The configured Celery app, created now (cdb_project/celery_on_use.py), before requests run in threads: two threads
# importing celery for the first time at once can see it half made (ImportError: current_app).
import celery  # noqa: E402, F401
from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from cdb_project.daphne_request import bound_daphne_requests  # noqa: E402
from cdb_project.websocket_origin import SameOriginValidator  # noqa: E402
from dashboard.routing import websocket_urlpatterns  # noqa: E402

bound_daphne_requests()  # a body over MAX_REQUEST_BODY_BYTES: 413, never held in memory (cdb_project/daphne_request.py)
application = ProtocolTypeRouter(
    {
        "http": ASGIStaticFilesHandler(django_asgi_app),
        "websocket": SameOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
