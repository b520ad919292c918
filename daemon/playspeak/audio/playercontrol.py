"""What the player's verbs ask of its owner task, and the one wake-up that carries it.

MPD's output/Control.hxx in small: the verbs (play, cancel, prepare, ...) do no PortAudio call
themselves; they leave a `Command`, or the time until which a prepared stream is wanted, here
and wake the owner, which takes each command when it acts on it. No I/O, no lock: everything
here runs on the trio thread (the verbs and the owner task never run at once); the PortAudio
thread reaches it only through `TrioToken.run_sync_soon(control.wake)`.
"""

from __future__ import annotations

import enum

import trio


class Command(enum.Enum):
    """A one-shot request to the owner: pending until the owner takes it."""

    START = "start"  # play(): start a stream for the frames in the ring (and report back)
    STOP_NOW = "stop now"  # the ring was emptied: close the running stream without idling first


class PlayerControl:
    """The verbs' requests to the player's owner task. Trio thread only."""

    def __init__(self) -> None:
        # Trio thread only: the verbs add, the owner takes (each take is one step, no await).
        self._pending: set[Command] = set()
        # Trio thread only: prepare() sets it, cancel() and the owner's start clear it; the
        # owner keeps a stream open (not started) while the time is before it. 0.0: none.
        self._open_until = 0.0
        # Trio thread only: set by any request (and by the PortAudio thread's run_sync_soon);
        # replaced by the owner after each wait, so a request during its work is not missed.
        self._wakeup = trio.Event()

    # --- the verbs (and the callbacks, through run_sync_soon) -------------------------------

    def ask(self, command: Command) -> None:
        """Leave `command` for the owner and wake it."""
        self._pending.add(command)
        self._wakeup.set()

    def pending(self, command: Command) -> bool:
        """Whether `command` was asked for and the owner has not taken it yet."""
        return command in self._pending

    def keep_open_until(self, when: float) -> None:
        """Speech is on its way: keep a stream open (not started) until monotonic `when`."""
        self._open_until = when
        self.wake()

    def unprepare(self) -> None:
        """The speech a stream was prepared for is gone: wake the owner to close it (if one
        was wanted)."""
        if self._open_until:
            self._open_until = 0.0
            self.wake()

    def wake(self) -> None:
        """Have the owner look again (a stream died, a switch point was reached)."""
        self._wakeup.set()

    # --- the owner task -------------------------------------------------------------------

    async def wait(self, timeout: float) -> None:
        """Owner: sleep until woken or for `timeout` seconds; not at all while a START is
        pending. Whatever woke it counts as seen: the next wake-up is a new one."""
        if Command.START not in self._pending:
            with trio.move_on_after(timeout):
                await self._wakeup.wait()
        self._wakeup = trio.Event()

    def take(self, command: Command) -> bool:
        """Owner: whether `command` was pending; it is not any more."""
        if command in self._pending:
            self._pending.remove(command)
            return True
        return False

    def open_wanted(self, now: float) -> bool:
        """Owner: whether a prepared stream is wanted at monotonic `now`."""
        return now < self._open_until

    def speech_came(self) -> None:
        """Owner: a stream started; no prepared one is waited for any more."""
        self._open_until = 0.0
