"""audio/priority.py: the daemon's threads are reniced together, never lowered, and a refusal is
reported, not raised. Each case runs in a child process: the nice value cannot be taken back."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

CHILD = textwrap.dedent(
    """
    import os, threading
    from playspeak.audio.priority import raise_priority
    started, release = threading.Event(), threading.Event()
    def early():
        started.set()
        release.wait()
    thread = threading.Thread(target=early)
    thread.start()
    started.wait()
    print(raise_priority({nice}) or "-")
    later = []
    late = threading.Thread(target=lambda: later.append(os.getpriority(os.PRIO_PROCESS, 0)))
    late.start(); late.join()
    print(os.getpriority(os.PRIO_PROCESS, 0), os.getpriority(os.PRIO_PROCESS, thread.native_id),
          later[0])
    release.set()
    """
)


def run_child(nice: int, *, start_nice: int = 0, unprivileged: bool = False) -> list[str]:
    """The child's output, started at `start_nice` (this test process may run at another)."""
    result = subprocess.run(
        [*DROP_CAP_SYS_NICE, sys.executable, "-c", CHILD.format(nice=nice)]
        if unprivileged
        else [sys.executable, "-c", CHILD.format(nice=nice)],
        capture_output=True,
        text=True,
        timeout=30,
        preexec_fn=lambda: os.setpriority(os.PRIO_PROCESS, 0, start_nice),
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


# root without the capability: what a service account or a sandboxed unit has
DROP_CAP_SYS_NICE = ["setpriv", "--bounding-set", "-sys_nice"]
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="raising a priority needs root here")


@needs_root
def test_every_thread_running_and_every_later_one_gets_the_priority() -> None:
    line, nices = run_child(-5, start_nice=3)
    assert line == "scheduling: nice -5 (was 3): audio is fed ahead of batch work"
    assert nices.split() == ["-5", "-5", "-5"]  # main, the thread started before, a later one


def test_a_higher_priority_given_from_outside_is_kept() -> None:
    # an ordinary user may only raise its nice value: given 5, it is asked for 7
    line, nices = run_child(7, start_nice=5) if os.geteuid() else run_child(3, start_nice=-2)
    assert line == "-"
    expected = "5" if os.geteuid() else "-2"
    assert nices.split() == [expected] * 3


@needs_root
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) not found")
def test_without_the_right_it_says_how_to_grant_it_and_runs_on() -> None:
    line, nices = run_child(-11, unprivileged=True)
    assert line.startswith("scheduling: staying at nice 0: nice -11 needs CAP_SYS_NICE")
    assert "Nice=-11" in line
    assert nices.split() == ["0", "0", "0"]
