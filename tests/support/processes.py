"""Starting the real processes the tests talk to (Celery workers, daphne, manage.py commands), each in a process group
of its own that is killed, whole, when the test that started it ends, passed or failed.

Every child process of a test starts here: ``start`` (a ``subprocess.Popen``), ``run`` (a ``subprocess.run``) or
``_spawn`` (logged to a file). Stopping signals the group's leader as a user would (SIGTERM, SIGINT), then kills what
is left of the group: a child that ignored the signal, and the children it started."""

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

from tests.support.paths import ROOT
from tests.support.waiting import wait_until

# Every group started, in order; ``stop_started_since`` ends those a test (or a module) left running.
_STARTED: list[subprocess.Popen] = []


def start(args: list[str], **popen_kwargs) -> subprocess.Popen:
    """``subprocess.Popen`` in a new session, so that the child and everything it starts share one process group."""
    popen = subprocess.Popen(args, start_new_session=True, **popen_kwargs)
    _STARTED.append(popen)
    return popen


def run(
    args: list[str],
    *,
    input=None,
    capture_output: bool = False,
    timeout: float | None = None,
    check: bool = False,
    **popen_kwargs,
) -> subprocess.CompletedProcess:
    """``subprocess.run`` whose child gets a process group of its own; whatever of the group outlives the child (or
    the child itself, on a timeout) is killed before this returns or raises."""
    if capture_output:
        popen_kwargs.update(stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if input is not None:
        popen_kwargs["stdin"] = subprocess.PIPE
    popen = start(args, **popen_kwargs)
    try:
        stdout, stderr = popen.communicate(input, timeout)
    finally:
        stop_group(popen, signal.SIGKILL, timeout=0)
    done = subprocess.CompletedProcess(popen.args, popen.returncode, stdout, stderr)
    if check:
        done.check_returncode()
    return done


def group_members(pgid: int) -> list[int]:
    """The live processes of process group ``pgid`` (zombies hold nothing and are not counted)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):  # gone meanwhile
            continue
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state not in ("Z", "X"):
            members.append(int(stat.parent.name))
    return members


def stop_group(popen: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
    """Send ``sig`` to the group's leader and give it ``timeout`` seconds to exit, then SIGKILL every process left
    in its group and wait until none is."""
    if popen.poll() is None and timeout > 0:
        popen.send_signal(sig)
        try:
            popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(popen.pid, signal.SIGKILL)  # the leader's pid is the group's id (start_new_session)
    except ProcessLookupError:  # nothing of the group is left
        pass
    popen.wait(10)
    wait_until(
        lambda: not group_members(popen.pid), timeout=10, interval=0.05, message=f"process group {popen.pid} to end"
    )


def mark() -> int:
    """A point in the list of started groups, for ``stop_started_since``."""
    return len(_STARTED)


def stop_started_since(point: int) -> None:
    """Kill every group started after ``point`` that is still there (stopped ones are only checked)."""
    started, _STARTED[point:] = _STARTED[point:], []
    for popen in started:
        stop_group(popen, signal.SIGKILL, timeout=0)


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
        """``sig`` to the process, ``timeout`` seconds to exit, then the rest of its group killed."""
        stop_group(self.popen, sig, timeout)


def _spawn(name: str, args: list[str], env: dict[str, str], log_dir: Path) -> Process:
    log = log_dir / f"{name}.log"
    with log.open("w") as handle:  # the child has its own copy of the descriptor
        popen = start(args, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)
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
