"""Starting the real processes the end-to-end tests talk to: Celery workers and daphne."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def child_env(**extra: str) -> dict[str, str]:
    db = connection.settings_dict
    url = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(DATABASE_URL=url, REDIS_URL=settings.REDIS_URL, STRATEGY_CACHE_URL=settings.STRATEGY_CACHE_URL)
    env.update(PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        if self.popen.poll() is not None:
            return
        self.popen.send_signal(sig)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)


def _spawn(name: str, args: list[str], env: dict[str, str], log_dir: Path) -> Process:
    log = log_dir / f"{name}.log"
    handle = log.open("w")
    popen = subprocess.Popen(args, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    return Process(name, popen, log)


def _wait_for(process: Process, ready, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            raise RuntimeError(f"{process.name} exited ({process.popen.returncode}) before {what}:\n{process.output()}")
        if ready():
            return
        time.sleep(0.1)
    process.stop()
    raise RuntimeError(f"{process.name}: no {what} within {timeout}s:\n{process.output()}")


def start_worker(
    name: str,
    env: dict[str, str],
    log_dir: Path,
    concurrency: int = 1,
    queues: str | None = None,
    pool: str = "prefork",
) -> Process:
    args = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "cdb_project",
        "worker",
        "-l",
        "INFO",
        "-P",
        pool,
        "-c",
        str(concurrency),
        "-n",
        f"{name}@%h",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        *(["-Q", queues] if queues else []),
    ]
    process = _spawn(name, args, env, log_dir)
    _wait_for(process, lambda: " ready." in process.output(), 60, "ready line")
    return process


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_daphne(env: dict[str, str], log_dir: Path, port: int | None = None, *, serve: bool = False) -> Process:
    """daphne on the project's ASGI application; with ``serve``, through ``manage.py serve`` (no feed) instead."""
    port = port or free_port()
    args = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "cdb_project.asgi:application"]
    if serve:
        args = [sys.executable, "manage.py", "serve", "--feed", "none", "--port", str(port)]
    process = _spawn(f"daphne-{port}", args, env, log_dir)

    def listening() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            return False

    _wait_for(process, listening, 30, "listening socket")
    process.port = port  # type: ignore[attr-defined]
    return process


def wait_until(predicate, timeout: float = 30, interval: float = 0.1, message: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; fail with ``message`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)
