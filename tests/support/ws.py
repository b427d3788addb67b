"""A websocket client for the dashboard that keeps every message it receives (read in a thread).

The dashboard websocket refuses anonymous connections: pass the session cookie of a logged-in user
(``session_cookie(user)`` mints one in the test database, ``http_login`` signs in through the login form).
"""

from __future__ import annotations

import http.cookiejar
import json
import threading
import urllib.parse
import urllib.request

from websockets.sync.client import connect


def session_cookie(user) -> str:
    """A ``sessionid=…`` Cookie header for ``user``, stored in the database the server reads."""
    from django.test import Client

    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


def http_login(port: int, username: str, password: str) -> str:
    """Sign in through the login form of a running server; returns the Cookie header of the session."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    base = f"http://127.0.0.1:{port}"
    opener.open(f"{base}/accounts/login/", timeout=10).read()
    token = next(c.value for c in jar if c.name == "csrftoken")
    body = urllib.parse.urlencode({"username": username, "password": password, "csrfmiddlewaretoken": token})
    request = urllib.request.Request(
        f"{base}/accounts/login/", data=body.encode(), headers={"Referer": f"{base}/accounts/login/"}
    )
    opener.open(request, timeout=10).read()
    session = next((c.value for c in jar if c.name == "sessionid"), None)
    if session is None:
        raise RuntimeError(f"login of {username!r} failed")
    return f"sessionid={session}"


class DashboardClient:
    def __init__(self, port: int, timeout: float = 10, cookie: str | None = None, origin: str | None = None) -> None:
        self.messages: list[dict] = []
        self.error: BaseException | None = None
        self._url, self._origin = f"ws://127.0.0.1:{port}/ws/dashboard/", origin or f"http://127.0.0.1:{port}"
        self._headers = {"Cookie": cookie} if cookie else None
        self._connected = threading.Event()
        self._socket = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="ws-reader")
        self._thread.start()
        if not self._connected.wait(timeout) or self.error:
            raise RuntimeError(f"could not connect to {self._url}: {self.error}")

    def _run(self) -> None:
        try:
            with connect(self._url, origin=self._origin, additional_headers=self._headers) as socket:
                self._socket = socket
                self._connected.set()
                for raw in socket:
                    self.messages.append(json.loads(raw))
        except Exception as error:  # closed by the server or by close(); keep it for the test to inspect
            self.error = error
            self._connected.set()

    def send(self, message: dict) -> None:
        self._socket.send(json.dumps(message))

    def pushed(self, kind: str) -> list[dict]:
        return [m["data"] for m in self.messages if m["kind"] == kind]

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
        self._thread.join(5)
