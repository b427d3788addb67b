"""A real daphne: request bodies bounded before they reach memory (413 JSON beyond MAX_REQUEST_BODY_BYTES), and a
multipart body Twisted cannot parse reaches the API, which answers 400 JSON.

Before, daphne put a whole body into the application's queue before the application ran: an anonymous 600 MB
POST took the web process from 168 to 771 MB (the compose limit is 768 MB); and Twisted answered a bad multipart
body with a bare 400 without a body.
"""

from __future__ import annotations

import http.client
import json

import pytest

from tests.support.processes import start_daphne

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]
MB = 1 << 20


def _peak_kb(pid: int) -> int:
    """The process's peak resident memory (VmHWM) in kB."""
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))


def _post(port: int, megabytes: int, *, chunked: bool) -> tuple[int, str, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    connection.putrequest("POST", "/api/token/")
    connection.putheader("Content-Type", "application/json")
    connection.putheader(*(("Transfer-Encoding", "chunked") if chunked else ("Content-Length", str(megabytes * MB))))
    connection.endheaders()
    block = b"x" * MB
    for _ in range(megabytes):
        connection.send(b"%x\r\n%s\r\n" % (MB, block) if chunked else block)
    if chunked:
        connection.send(b"0\r\n\r\n")
    response = connection.getresponse()
    return response.status, response.getheader("Content-Type"), response.read()


@pytest.fixture
def server(service_env, tmp_path):
    process = start_daphne(service_env, tmp_path)
    yield process
    process.stop()


def test_a_large_body_is_refused_413_without_growing_the_web_process(server):
    before = _peak_kb(server.popen.pid)
    status, content_type, body = _post(server.port, 256, chunked=False)
    assert (status, content_type) == (413, "application/json")
    assert json.loads(body) == {"detail": "Request body too large: at most 1048576 bytes."}
    grown_mb = (_peak_kb(server.popen.pid) - before) / 1024
    print(f"web process peak memory grew {grown_mb:.1f} MB for a 256 MB body")
    assert grown_mb < 32


def test_a_streamed_body_is_counted_as_it_arrives(server):
    status, _, body = _post(server.port, 64, chunked=True)
    assert status == 413 and "too large" in json.loads(body)["detail"]


def test_a_body_within_the_limit_still_reaches_the_application(server):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    body = json.dumps({"username": "nobody", "password": "x" * (MB // 2)})
    connection.request("POST", "/api/token/", body, {"Content-Type": "application/json"})
    response = connection.getresponse()
    assert response.status == 400 and "password" in json.loads(response.read())  # the API's own validation


@pytest.mark.parametrize("body", [b"", b"--xyz\r\n", b"garbage"])
def test_a_broken_or_empty_multipart_body_gets_the_apis_json_400(server, body):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request("POST", "/api/token/", body, {"Content-Type": "multipart/form-data; boundary=xyz"})
    response = connection.getresponse()
    assert response.status == 400 and response.getheader("Content-Type") == "application/json"
    assert json.loads(response.read())  # names what is wrong
