"""Running `manage.py` commands as a person does, on a SQLite file of a test's own, and reading their refusals."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support import processes
from tests.support.processes import ROOT


def sqlite_env(db: Path, **extra: str) -> dict[str, str]:
    """The environment of a command on the SQLite file ``db``, embedded (no Redis)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL") and not k.startswith("PYTEST")}
    env.update(DATABASE_URL=f"sqlite:///{db}", PYTHONUNBUFFERED="1", **extra)
    return env


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return processes.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def refused(done: subprocess.CompletedProcess) -> str:
    """The one line a command refused with exit 2 says."""
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]
