"""A cancelled test run leaves none of its private PulseAudio servers running: SIGTERM to the
pytest that `scripts/test` became (what `kill` or a CI timeout sends). A real pytest with two
xdist workers runs a test that waits to be cancelled, with this directory's conftest starting a
sink in each worker. The servers die with the process that started them (setpriv --pdeathsig),
however it ends; Ctrl-C (SIGINT to the terminal's process group) is left out: on a loaded
machine xdist itself once took over 30 s to end on it (seen here, other tests running beside), and
what it would add is xdist's handling of SIGINT, not ours."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

TESTS = Path(__file__).parent
WORKERS = 2
WAITING = """
import threading

def test_waits_to_be_cancelled():
    threading.Event().wait(60)
"""


def processes_naming(marker: str) -> list[int]:
    """Pids whose command line names `marker` (the servers' runtime directories are in it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:  # ended meanwhile
            continue
        if marker.encode() in cmdline:
            found.append(int(entry.name))
    return found


def wait_until(check: Callable[[], bool], timeout: float) -> bool:
    """Bounded polling: another process's state has no event to wait on."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def test_a_cancelled_run_leaves_no_sound_server(tmp_path: Path) -> None:
    (tmp_path / "test_waiting.py").write_text(WAITING)
    marker = tmp_path / "tmp"  # the inner run's TMPDIR: its sinks' directories are made there
    marker.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(PYTHONPATH=str(TESTS), TMPDIR=str(marker))
    run = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "conftest", "-n", str(WORKERS), "-q"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    try:
        started = wait_until(lambda: len(processes_naming(str(marker))) >= WORKERS, 60)
        assert started, f"the inner run's {WORKERS} sound servers did not start"
        run.send_signal(signal.SIGTERM)
        run.communicate(timeout=30)

        assert wait_until(lambda: not processes_naming(str(marker)), 10), (
            f"still running after the run was cancelled: {processes_naming(str(marker))}"
        )
    finally:  # whatever this test found wrong, it leaves nothing behind
        run.kill()
        run.communicate()
        for pid in processes_naming(str(marker)):
            os.kill(pid, signal.SIGKILL)
