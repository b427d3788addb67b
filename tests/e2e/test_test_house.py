"""The test suite's own house rules (issue 23, "Tests"), each shown on a real pytest run in a child process:

* a failed test never leaves a child process behind: every child starts through ``tests/support/processes.py`` in
  a process group of its own, and the group is killed when the test ends, however it ends;
* a test that reads ``../shared/data`` skips with the reason when the data is absent, and fails under ``CI=true``.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path

from tests.support import processes
from tests.support.paths import ROOT

TESTS = ROOT / "tests"

# A child that ignores Ctrl-C and SIGTERM (as the run_feed child of the issue did), with a grandchild that inherits
# that; it writes "<its pid> <the grandchild's pid>" to the file it is given, then waits.
STUBBORN = """
import os, signal, subprocess, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
with open(sys.argv[1] + ".tmp", "w") as out:
    out.write(f"{os.getpid()} {grandchild.pid}")
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(600)
"""

INNER_CONFTEST = """
from tests.conftest import _no_child_left_by_the_module, _no_child_left_by_the_test, pytest_runtest_setup  # noqa
from tests.support import paths

paths.CANDLES = paths.SHARED_DATA / "not-here"  # as in a checkout without ../shared/data


def pytest_configure(config):
    config.addinivalue_line("markers", "shared_data: reads ../shared/data")
"""

INNER_TESTS = """
import os
import signal
import sys
from pathlib import Path

import pytest

from tests.support import processes

STUBBORN = {stubborn!r}
PIDS = Path(os.environ["PIDS_DIR"])


def stubborn_child(name: str):
    pids = PIDS / name
    popen = processes.start([sys.executable, "-c", STUBBORN, str(pids)])
    processes.wait_until(pids.exists, timeout=30, message="the child's pids")
    return popen


def test_fails_and_leaves_its_child_running():
    stubborn_child("left")
    assert False, "fails on purpose, its child still running"


def test_fails_then_stops_its_child_with_ctrl_c():
    popen = stubborn_child("interrupted")
    try:
        assert False, "fails on purpose"
    finally:
        processes.stop_group(popen, signal.SIGINT, timeout=1)  # ignored: the group is killed after 1 s


def test_the_failed_tests_children_are_gone_before_the_next_test():
    for name in ("left", "interrupted"):
        leader, grandchild = map(int, (PIDS / name).read_text().split())
        assert processes.group_members(leader) == [], name


@pytest.mark.shared_data
def test_reads_the_shared_candles():
    pass
"""


def _inner_pytest(tmp_path: Path, **env: str) -> str:
    """The inner tests above, run by pytest in a child process in ``tmp_path``: what it printed."""
    tmp_path.mkdir()
    (tmp_path / "conftest.py").write_text(INNER_CONFTEST)
    (tmp_path / "test_inner.py").write_text(INNER_TESTS.format(stubborn=STUBBORN))
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST") and k != "CI"}
    child_env.update(PYTHONPATH=str(ROOT), PIDS_DIR=str(tmp_path), **env)
    done = processes.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-p", "no:django", "test_inner.py"],
        cwd=tmp_path,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    return done.stdout + done.stderr


def test_a_failed_test_leaves_no_process_of_its_group(tmp_path):
    tmp_path = tmp_path / "run"
    try:
        output = _inner_pytest(tmp_path)
        assert "2 failed, 1 passed, 1 skipped" in output, output
        for name in ("left", "interrupted"):
            leader, grandchild = map(int, (tmp_path / name).read_text().split())
            left = processes.group_members(leader)  # the child and its grandchild were both in the group
            assert left == [], f"{name}: the child {leader} / grandchild {grandchild} left running: {left}"
    finally:  # if the rule is broken, this test does not break it too
        for pids in (tmp_path / "left", tmp_path / "interrupted"):
            if pids.exists():
                leader = int(pids.read_text().split()[0])
                if processes.group_members(leader):
                    os.killpg(leader, signal.SIGKILL)


def test_without_the_shared_data_a_test_skips_with_the_reason_and_fails_under_ci(tmp_path):
    output = _inner_pytest(tmp_path / "plain")
    assert "2 failed, 1 passed, 1 skipped" in output, output
    assert (
        "SKIPPED [1]" in output and "shared_data not available: ../shared/data is absent: no candle files in" in output
    )

    under_ci = _inner_pytest(tmp_path / "ci", CI="true")
    assert "2 failed, 1 passed, 1 error" in under_ci, under_ci
    assert "shared_data required: ../shared/data is absent" in under_ci, under_ci


def test_every_child_process_of_a_test_starts_through_the_helper():
    """``subprocess``'s own starters give no process group and no clean-up; tests/support/processes.py does."""
    starter = re.compile(r"\bsubprocess\.(Popen|run|call|check_call|check_output)\(|\bos\.(fork|spawn\w*)\(")
    helper, this_file = TESTS / "support" / "processes.py", Path(__file__).resolve()
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in sorted(TESTS.rglob("*.py"))
        if path not in (helper, this_file)
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if starter.search(line)
    ]
    assert not found, "start child processes with tests.support.processes (start, run, _spawn):\n" + "\n".join(found)
