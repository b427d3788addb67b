"""Logs are JSON lines, and secrets never reach them: the formatter on its own, then the real system run with
known fake secrets (a private password-protected redis-server, a password in DATABASE_URL, API keys) whose
logs are searched for them."""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys

import pytest

from ground.logging import JsonFormatter, log_context, redact, secret_values
from tests.support import processes

FAKE = {
    "SECRET_KEY": "fake-django-secret-key-0123456789abcdef-long-enough-to-be-accepted",
    "MEXC_API_KEY": "mx0vglFAKEAPIKEY1234",
    "MEXC_API_SECRET": "FAKEAPISECRETabcdef0123456789",
    "API_TOKEN": "tok-FAKE-98765",
}
DB_PASSWORD = "FakeDbPw-7781"
REDIS_PASSWORD = "FakeRedisPw-4410"


def record(message, *args, **extra) -> logging.LogRecord:
    rec = logging.LogRecord("cdb.test", logging.WARNING, __file__, 1, message, args, None)
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def test_a_record_is_one_json_line_with_the_known_fields():
    line = JsonFormatter().format(record("order %s filled", "c-1", symbol="BTC_USDT", client_order_id="c-1"))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "WARNING" and entry["logger"] == "cdb.test" and entry["message"] == "order c-1 filled"
    assert entry["symbol"] == "BTC_USDT" and entry["client_order_id"] == "c-1"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["timestamp"])  # as every JSON time


def test_the_event_of_the_running_task_names_symbol_and_order(monkeypatch):
    token = log_context.set({"symbol": "ETH_USDT", "client_order_id": "abc"})
    try:
        entry = json.loads(JsonFormatter().format(record("inside a task")))
    finally:
        log_context.reset(token)
    assert entry["symbol"] == "ETH_USDT" and entry["client_order_id"] == "abc"


def test_secrets_from_the_environment_and_url_passwords_are_masked(monkeypatch):
    monkeypatch.setenv("MEXC_API_SECRET", "s3cr3t-value-xyz")
    monkeypatch.setenv("DATABASE_URL", "postgres://cdb:pa%40ss-word@db:5432/cdb")
    assert "s3cr3t-value-xyz" in secret_values() and "pa@ss-word" in secret_values()
    formatter = JsonFormatter()
    try:
        raise RuntimeError("login with s3cr3t-value-xyz failed")
    except RuntimeError:
        rec = record("connecting to %s with pa@ss-word", "postgres://cdb:pa%40ss-word@db:5432/cdb")
        rec.exc_info = sys.exc_info()
    line = formatter.format(rec)
    for secret in ("s3cr3t-value-xyz", "pa@ss-word", "pa%40ss-word"):
        assert secret not in line
    assert json.loads(line)["message"] == "connecting to postgres://cdb:***@db:5432/cdb with ***"
    assert redact("Authorization: Token 0123456789abcdef", []) == "Authorization: Token ***"
    assert redact('{"password": "hunter22"}', []) == '{"password": "***"}'
    assert redact("redis://:pw123456@cdb_redis:6379/0", []) == "redis://:***@cdb_redis:6379/0"


def _private_redis(tmp_path, password: str):
    port = processes.free_port()
    proc = processes.start(
        [shutil.which("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--requirepass", password]
        + ["--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import redis

    processes.wait_until(
        lambda: _pings(redis.Redis(port=port, password=password)), timeout=10, message="private redis-server"
    )
    return proc, port


def _pings(client) -> bool:
    try:
        return bool(client.ping())
    except Exception:
        return False


@pytest.mark.workers
@pytest.mark.django_db(transaction=True)
def test_the_running_system_never_logs_a_secret(service_env, tmp_path):
    from django.db import connection

    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    redis_proc, redis_port = _private_redis(tmp_path, REDIS_PASSWORD)
    db = connection.settings_dict
    env = {
        **service_env,
        **FAKE,
        "LOG_LEVEL": "DEBUG",
        # PostgreSQL here trusts local connections: the password is sent and ignored, but it is in every process
        "DATABASE_URL": f"postgres://{db['USER']}:{DB_PASSWORD}@127.0.0.1:{db['PORT'] or 5432}/{db['NAME']}",
        "REDIS_URL": f"redis://:{REDIS_PASSWORD}@127.0.0.1:{redis_port}/0",
    }
    worker = server = None
    try:
        worker, server = start_with_entrypoint(env, tmp_path)
        csv = tmp_path / "SECRET_USDT-1m.csv"
        rows = ["timestamp_ms,open,high,low,close,volume"]
        for i in range(40):
            price = 100 - 0.1 * i if i < 30 else 110 + i
            rows.append(f"{1_730_443_200_000 + i * 60_000},{price},{price * 1.001},{price * 0.999},{price},{100 + i}")
        csv.write_text("\n".join(rows) + "\n")
        replay = processes.run(
            [sys.executable, "manage.py", "run_feed", "--source", "replay", "--data", str(csv), "--speed", "max"]
            + ["--no-progress"],
            cwd=processes.ROOT,
            env={**env, "STRATEGY": "sma_cross"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert replay.returncode == 0, replay.stderr
        # things that would print a secret if the formatter let it through
        shell = processes.run(
            [sys.executable, "manage.py", "shell", "-c", _LEAKY_CODE],
            cwd=processes.ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert shell.returncode == 0, shell.stderr
        import urllib.request

        for path in ("/health", "/metrics", "/api/status/?password=" + DB_PASSWORD):
            try:
                urllib.request.urlopen(
                    urllib.request.Request(f"http://127.0.0.1:{server.port}{path}", headers={"Host": "localhost"}),
                    timeout=10,
                ).read()
            except Exception:
                pass
        from ground import bus

        processes.wait_until(lambda: _idle(bus, env), timeout=60, message="the worker to finish")
    finally:
        for proc in (server, worker):
            if proc is not None:
                proc.stop()
        redis_proc.terminate()
        redis_proc.wait(10)

    logs = {
        "worker": worker.output(),
        "daphne": server.output(),
        "replay": replay.stdout + replay.stderr,
        "shell": shell.stdout + shell.stderr,
    }
    secrets = [*FAKE.values(), DB_PASSWORD, REDIS_PASSWORD]
    for name, text in logs.items():
        for secret in secrets:
            assert secret not in text, f"{secret!r} found in the {name} log"
    for name in ("worker", "daphne"):  # processes started as in production log nothing but JSON lines
        for line in logs[name].splitlines():
            if not line.strip() or line.startswith("worker: Warm shutdown"):  # Celery's console notice on SIGTERM
                continue
            assert line.startswith("{"), f"{name}: not a JSON line: {line!r}"
    json_lines = [line for text in logs.values() for line in text.splitlines() if line.startswith("{")]
    assert len(json_lines) > 20
    for line in json_lines:
        entry = json.loads(line)
        assert {"timestamp", "level", "logger", "message"} <= set(entry)
    assert "***" in logs["shell"]  # the leaks were attempted and masked
    assert any(" ready." in json.loads(line)["message"] for line in logs["worker"].splitlines() if line[:1] == "{")
    assert any(json.loads(line).get("symbol") == "SECRET_USDT" for line in json_lines), "no line names the symbol"


def start_with_entrypoint(env: dict, tmp_path, concurrency: int = 1):
    """A worker and daphne started the way production starts them: docker/entrypoint.sh."""
    port = processes.free_port()
    env = {**env, "PYTHON": sys.executable, "CDB_MIGRATE": "0", "WEB_BIND": "127.0.0.1", "WEB_PORT": str(port)}
    env["WORKER_CONCURRENCY"] = str(concurrency)
    entry = str(processes.ROOT / "docker" / "entrypoint.sh")
    worker = processes._spawn("worker-entry", ["sh", entry, "worker"], env, tmp_path)
    processes._wait_for(worker, lambda: " ready." in worker.output(), 60, "ready line")
    server = processes._spawn("web-entry", ["sh", entry, "web"], env, tmp_path)
    processes._wait_for(server, lambda: _listening(port), 30, "listening socket")
    server.port = port
    return worker, server


def _listening(port: int) -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def _idle(bus, env) -> bool:
    import redis

    client = redis.Redis.from_url(env["REDIS_URL"])
    return client.llen("celery") == 0 and client.hlen("unacked") == 0


_LEAKY_CODE = """
import logging, os
from django.conf import settings
log = logging.getLogger("cdb.leak")
log.error("database %s", os.environ["DATABASE_URL"])
log.error("redis %s", settings.REDIS_URL)
log.warning("keys %s %s %s", settings.MEXC_API_KEY, settings.MEXC_API_SECRET, settings.SECRET_KEY)
log.warning("token %s", os.environ["API_TOKEN"])
try:
    raise RuntimeError("auth failed for " + settings.DATABASES["default"]["PASSWORD"])
except RuntimeError:
    log.exception("with a traceback")
"""
