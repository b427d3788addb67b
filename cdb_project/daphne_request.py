"""daphne's request class with two changes: bodies bounded before they reach memory, and no form parsing.

Bodies: 413 beyond ``MAX_REQUEST_BODY_BYTES``. An ASGI middleware cannot do this under daphne: daphne receives the
whole body first (Twisted spools it to a file) and then, before the application has run a line, puts all of it into
the application's queue as 8 KB messages — a 600 MB POST held 600 MB of memory whatever the application answered. So
the limit sits in daphne's request class, the only place it offers: a body whose ``Content-Length`` or streamed
(chunked) size goes over the limit is counted and dropped as it arrives, and the request is answered 413 with a JSON
body once it is in; no application instance is created for it. Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (the same
figure, settings.py) stays as the second line for anything that runs the application without daphne.

Forms: Twisted parses a POSTed form body itself, for nobody (daphne hands the raw body on), and answers a multipart
body it cannot parse with a bare 400 without a body before the application sees it. Django and DRF parse bodies
and answer such a request with their usual 400 (JSON on the API).
"""

from __future__ import annotations

import io
import json

from daphne import http_protocol
from django.conf import settings


class BoundedWebRequest(http_protocol.WebRequest):
    """daphne's request, keeping at most ``MAX_REQUEST_BODY_BYTES`` of a body and leaving forms to Django."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, parsePOSTFormSubmission=False, **kwargs)  # Twisted's switch for its form parsing

    def gotLength(self, length: int | None) -> None:  # noqa: N802 (Twisted's name)
        self.body_bytes = 0
        self.body_too_large = length is not None and length > settings.MAX_REQUEST_BODY_BYTES
        if self.body_too_large:
            self.content = io.BytesIO()  # nothing is written to it
        else:
            super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:  # noqa: N802
        self.body_bytes += len(data)
        if not self.body_too_large and self.body_bytes > settings.MAX_REQUEST_BODY_BYTES:
            self.body_too_large = True  # a chunked body that grew past the limit: drop what was spooled
            self.content.close()
            self.content = io.BytesIO()
        if not self.body_too_large:
            super().handleContentChunk(data)

    def process(self):
        if not self.body_too_large:
            return super().process()
        detail = f"Request body too large: at most {settings.MAX_REQUEST_BODY_BYTES} bytes."
        self.handle_reply(
            {"type": "http.response.start", "status": 413, "headers": [(b"Content-Type", b"application/json")]}
        )
        self.handle_reply({"type": "http.response.body", "body": json.dumps({"detail": detail}).encode()})
        return None


def bound_daphne_requests() -> None:
    """Make daphne's HTTP factory build :class:`BoundedWebRequest` (it looks the class up when a client connects)."""
    http_protocol.WebRequest = BoundedWebRequest
