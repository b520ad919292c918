"""The daemon's scheduling priority: audio is fed ahead of batch work on a busy machine.

PortAudio calls the player's callback from its own thread, and that callback needs the GIL,
which any thread of the daemon may be holding when the kernel preempts it. So it is the whole
process, not one thread, that must not wait behind CPU-bound neighbours: on a machine with
every core busy, a daemon at nice 0 got too little CPU for its 40 ms device buffer and PortAudio
reported output underflows (heard as gaps). PulseAudio runs at nice -11 for
the same reason; `audio.nice` defaults to that.

On Linux the nice value belongs to each thread, and a new thread inherits its creator's: every
thread running now is reniced, and every later one (trio's workers, PortAudio's) inherits it.
"""

from __future__ import annotations

import contextlib
import os


def raise_priority(nice: int) -> str:
    """Renice this process's threads to `nice` if they run at a lower priority (a higher nice
    value); never lowers a priority someone gave us (systemd's Nice=, `nice -n`). Returns a line
    for the log saying what happened, or "" when there was nothing to do. Never raises: without
    the right (root, CAP_SYS_NICE, or an RLIMIT_NICE that allows it) the daemon runs on at the
    priority it was given, and the line says how to grant it."""
    before = os.getpriority(os.PRIO_PROCESS, 0)
    if nice >= before:
        return ""
    try:
        for thread_id in _thread_ids():
            with contextlib.suppress(ProcessLookupError):  # that thread has just ended
                os.setpriority(os.PRIO_PROCESS, thread_id, nice)
    except PermissionError:
        return (
            f"scheduling: staying at nice {before}: nice {nice} needs CAP_SYS_NICE "
            f"(systemd: Nice={nice}); audio may break up when every core is busy"
        )
    except OSError as e:
        return f"scheduling: staying at nice {before}: {e}"
    return f"scheduling: nice {nice} (was {before}): audio is fed ahead of batch work"


def _thread_ids() -> list[int]:
    try:
        return [int(name) for name in os.listdir("/proc/self/task")]
    except OSError:  # not Linux: the nice value is the process's
        return [0]
