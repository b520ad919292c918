"""The quick→steady switch policy: where a stretch moves to the deep-buffered stream, and when.

A stretch starts on a quick (shallow) stream; at its first pause (audio.pauses) it moves to the
steady one: the quick stream reads up to a point inside the pause and plays silence from there,
and once that point is heard the steady stream starts from it. `SteadySwitch.decide` makes
that plan from the ring and the playout clock and says what the owner is to do now; it does
no I/O (the owner opens and starts the streams).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .pauses import PAUSE_SECONDS, pauses
from .playout import PlayoutClock
from .ring import PcmRing

# The switch happens inside a pause (60 ms below -54 dBFS), _PAUSE_INSET_SECONDS into it, and
# only with at least _STEADY_AHEAD_SECONDS buffered after it (the steady stream takes its
# deeper buffer at once).
_PAUSE_INSET_SECONDS = 0.02
_STEADY_AHEAD_SECONDS = 0.4
_DEEPER = 1.5  # steady_latency must be this many times the quick stream's for a switch
# The steady stream is started this long before the switch point is heard: about what opening
# and starting it take, so that the pause keeps its length (both streams play silence there).
_SWITCH_LEAD_SECONDS = 0.008
_PAUSE_SCAN_SECONDS = 0.5  # ring searched per look (4 looks a second)


class Hold(enum.Enum):
    """Why the stretch stays on the stream that plays, for now."""

    OFF = "no steady_latency"
    SHALLOW = "the steady buffer is not clearly deeper than the quick stream's"
    REFUSED = "the device refused a second stream (until run() restarts)"
    ON_STEADY = "the steady stream plays already"
    SCHEDULED = "a scheduled start is being padded (a switch would move its first frame)"
    NO_PAUSE = "no pause with enough audio after it in the ring yet"
    APPROACHING = "the quick stream has not read up to the switch point yet"


@dataclass(frozen=True)
class KeepQuick:
    """Nothing to do now: the stream that plays goes on."""

    why: Hold


@dataclass(frozen=True)
class SwitchAt:
    """A switch point was just found: the quick stream is to read up to `position` (inside a
    pause) and play silence from there."""

    position: int


@dataclass(frozen=True)
class StartSteadyAt:
    """The quick stream has read up to the switch point: start the steady stream at monotonic
    time `when` (just before that point is heard), or at once if that has passed."""

    when: float


Decision = KeepQuick | SwitchAt | StartSteadyAt


class SteadySwitch:
    """One player's switch plan. Trio thread only, but for `at`, which the callback reads."""

    def __init__(self) -> None:
        # Written by trio, read by the PortAudio thread (one store of a whole value):
        self.at: int | None = None  # the quick stream reads up to here (inside a pause)
        # Trio thread only:
        self.due: float | None = None  # when to start the steady stream (monotonic)
        # no switch before this position (a scheduled start's first frame: pad_until); None
        # while one is being padded
        self.floor: int | None = 0
        self.refused = ""  # why the device would not take the steady stream (this run)
        self._scanned_to = 0  # ring position searched for a pause so far

    def forget(self) -> None:
        """A planned switch is void (its pause was dropped, or the stretch ended)."""
        self.at = self.due = None
        self._scanned_to = 0

    def refuse(self, reason: str) -> None:
        """The device would not take the steady stream: no switch is tried again (this run)."""
        self.refused = reason

    def decide(
        self,
        ring: PcmRing,
        clock: PlayoutClock,
        *,
        rate: int,
        blocksize: int,
        quick_latency: float,
        prefill_seconds: float,
        steady_latency: float,
        on_steady: bool,
        now: float,
    ) -> Decision:
        """Plan the switch at the next pause, or say when to make it once the quick stream has
        read up to that point. `quick_latency` is the quick stream's reported latency,
        `prefill_seconds` what it takes from the ring at once (Player.prefill_seconds)."""
        if not steady_latency:
            return KeepQuick(Hold.OFF)
        if steady_latency < _DEEPER * quick_latency:  # only worth it when clearly deeper
            return KeepQuick(Hold.SHALLOW)
        if self.refused:
            return KeepQuick(Hold.REFUSED)
        if on_steady:
            return KeepQuick(Hold.ON_STEADY)
        if self.floor is None:
            return KeepQuick(Hold.SCHEDULED)
        if self.at is None:
            # beyond what the quick stream takes before the limit is seen: its buffer and a block
            earliest = ring.frames_read + round(rate * prefill_seconds) + blocksize
            self.at = self._find_pause(ring, rate, max(earliest, self.floor))
            return KeepQuick(Hold.NO_PAUSE) if self.at is None else SwitchAt(self.at)
        if ring.frames_read < self.at:
            return KeepQuick(Hold.APPROACHING)  # the callback wakes the owner there
        if self.due is None:
            heard = clock.heard_at(self.at, rate)
            self.due = (now if heard is None else heard) - _SWITCH_LEAD_SECONDS
        return StartSteadyAt(self.due)

    def _find_pause(self, ring: PcmRing, rate: int, earliest: int) -> int | None:
        """The position inside the first pause in the ring from `earliest` on that has enough
        audio after it; None if there is none (yet). Searches _PAUSE_SCAN_SECONDS per look."""
        run = round(rate * PAUSE_SECONDS)
        scan = round(rate * _PAUSE_SCAN_SECONDS)
        start, frames = ring.peek(max(earliest, self._scanned_to - run), scan)
        end = start + len(frames)
        if end - start < run:
            return None
        self._scanned_to = end
        found = pauses(frames, rate)
        if not found:
            return None
        position = start + found[0][0] + round(rate * _PAUSE_INSET_SECONDS)
        if ring.frames_written - position < rate * _STEADY_AHEAD_SECONDS:
            self._scanned_to = position - round(rate * _PAUSE_INSET_SECONDS)  # look again
            return None
        return position
