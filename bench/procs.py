"""Processes for the benchmarks: tools install, CPU and peak memory from /proc and wait4, and
stopping what we started by its pid (bounded in time)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from dataclasses import dataclass

import trio

from playspeak.testing.soundcard import terminate

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
TOOLS = {"mpv": "mpv", "ffplay": "ffmpeg"}  # command -> Debian package


def environ_with(**extra: str) -> dict[str, str]:
    """A copy of os.environ with `extra` set."""
    return {**os.environ, **extra}


def ensure_tools(commands: list[str]) -> None:
    """Install the Debian packages of missing `commands` (mpv, ffplay) with apt-get; runs
    `apt-get update` and retries once if the first install fails. Raises RuntimeError."""
    missing = sorted({TOOLS[c] for c in commands if shutil.which(c) is None})
    if not missing:
        return
    install = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    env = environ_with(DEBIAN_FRONTEND="noninteractive")
    print(f"installing {' '.join(missing)} (apt-get) ...", flush=True)
    if subprocess.run(install, env=env, capture_output=True, timeout=900).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=600)
        done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise RuntimeError(f"apt-get install {' '.join(missing)} failed: {done.stderr[-800:]}")
    still = [c for c in commands if shutil.which(c) is None]
    if still:
        raise RuntimeError(f"still missing after install: {', '.join(still)}")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = open(f"/proc/{pid}/stat").read()  # noqa: SIM115 - tiny read, closed at once
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # fields from the 3rd ("state") on


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by `pid` (all its threads), from /proc; 10 ms
    resolution. Raises ProcessLookupError if it is gone."""
    fields = _stat_fields(pid)
    if fields is None:
        raise ProcessLookupError(pid)
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def peak_rss_mib(pid: int) -> float:
    """Peak resident memory (VmHWM) of `pid` in MiB, from /proc/<pid>/status."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise ProcessLookupError(pid)


@dataclass(frozen=True)
class Usage:
    """What a finished child used: CPU seconds (wait4's rusage) and peak RSS in MiB (VmHWM
    polled while it ran: wait4's ru_maxrss is no good here, as exec() records the forking
    parent's high-water mark in it)."""

    returncode: int
    cpu: float
    peak_rss_mib: float


def spawn(command: list[str], env: dict[str, str], *, stdin: bool) -> subprocess.Popen[bytes]:
    """Start a child with stdout/stderr discarded (and stdin a pipe when asked)."""
    return subprocess.Popen(
        command,
        env=env,
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def reap(process: subprocess.Popen[bytes], timeout: float, peak: float = 0.0) -> Usage:
    """Wait for the child to exit (at most `timeout`, then it is stopped by its pid); its
    CPU time from wait4, and the highest VmHWM seen (polled every 20 ms, and `peak` so far)."""
    highest = peak

    def wait() -> tuple[int, int, os.struct_rusage] | None:
        with contextlib.suppress(ChildProcessError):
            return os.wait4(process.pid, 0)
        return None

    async def watch(done: trio.Event) -> None:
        nonlocal highest
        while not done.is_set():
            try:
                highest = max(highest, peak_rss_mib(process.pid))
            except (OSError, ProcessLookupError):
                return  # exited: no memory any more
            with trio.move_on_after(0.02):
                await done.wait()

    result: tuple[int, int, os.struct_rusage] | None = None
    async with trio.open_nursery() as nursery:
        done = trio.Event()
        nursery.start_soon(watch, done)
        with trio.move_on_after(timeout):
            result = await trio.to_thread.run_sync(wait, abandon_on_cancel=True)
        if result is None:
            await trio.to_thread.run_sync(terminate, process.pid)
            result = await trio.to_thread.run_sync(wait)
        done.set()
    if result is None:
        process.returncode = -1
        return Usage(-1, float("nan"), highest)
    _, status, rusage = result
    process.returncode = os.waitstatus_to_exitcode(status)
    return Usage(process.returncode, rusage.ru_utime + rusage.ru_stime, highest)


def peak_of(process: subprocess.Popen[bytes]) -> float:
    """VmHWM of a running child in MiB, 0 if it has already exited."""
    try:
        return peak_rss_mib(process.pid)
    except (OSError, ProcessLookupError):
        return 0.0


def loadavg() -> str:
    """The 1-minute load average, to report what else was running."""
    with open("/proc/loadavg") as f:
        return f.read().split()[0]
