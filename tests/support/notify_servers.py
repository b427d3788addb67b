"""Local servers that receive real notifications: an HTTP server for Apprise ``json://`` webhooks (answering 200,
or 500, optionally after a delay) and an SMTP server (aiosmtpd, with AUTH) for ``mailto://``."""

from __future__ import annotations

import json
import threading
import time
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from tests.support.processes import free_port


class WebhookServer:
    """Records every POST body (JSON) it gets; answers ``status`` after ``delay`` seconds."""

    def __init__(self, status: int = 200, delay: float = 0.0) -> None:
        self.status, self.delay = status, delay
        self.received: list[dict] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with outer.lock:
                    outer.received.append(
                        {"path": self.path, "auth": self.headers.get("Authorization"), **json.loads(body)}
                    )
                if outer.delay:
                    time.sleep(outer.delay)
                self.send_response(outer.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str = "hook", query: str = "", credentials: str = "") -> str:
        auth = f"{credentials}@" if credentials else ""
        return f"json://{auth}127.0.0.1:{self.port}/{path}" + (f"?{query}" if query else "")

    def messages(self) -> list[dict]:
        with self.lock:
            return list(self.received)

    def __enter__(self) -> WebhookServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


class SmtpServer:
    """Accepts mail for any recipient after AUTH with ``password``; keeps (subject, body text) of each."""

    def __init__(self, user: str = "cdb", password: str = "Mail-Secret-42") -> None:
        self.user, self.password = user, password
        self.received: list[dict] = []
        outer = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802
                mail = message_from_bytes(envelope.content, policy=policy.default)
                part = mail.get_body(preferencelist=("plain", "html"))
                outer.received.append(
                    {
                        "to": envelope.rcpt_tos,
                        "subject": str(mail["Subject"]),
                        "body": part.get_content() if part else "",
                    }
                )
                return "250 OK"

        def authenticate(server, session, envelope, mechanism, auth_data):
            ok = auth_data.login.decode() == user and auth_data.password.decode() == password
            return AuthResult(success=ok)

        self.port = free_port()
        self.controller = Controller(
            Handler(), hostname="127.0.0.1", port=self.port, authenticator=authenticate, auth_require_tls=False
        )

    def url(self, query: str = "") -> str:
        base = f"mailto://{self.user}:{self.password}@127.0.0.1:{self.port}?to=ops@example.com&from=cdb@example.com"
        return base + (f"&{query}" if query else "")

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.controller.stop()
