"""The playout clock: when each frame the callback took from the ring is heard. I/O-free.

The PortAudio callback reports every block it reads (`PlayoutClock.read`): its ring position,
when it was read and the stream's DAC time for it. From the last such block the clock reckons
when any frame leaves the device (`heard_at`), the player's `wait_played`, the steady switch's
timing and a scheduled start all ask it. Positions are the ring's absolute frame counts, so a
block of a new stream (a restart, the steady switch) simply takes over from the last one.
"""

from __future__ import annotations

from typing import NamedTuple

# Reported DAC latencies outside [0, this) are not believed (some backends report 0 or garbage
# for a stream's first blocks): the stream's own reported latency stands in.
MAX_SANE_LATENCY = 1.0


class Block(NamedTuple):
    """One block the callback took from the ring: frames [start, end), read at monotonic
    `read_at`, its first frame heard `latency` seconds later."""

    start: int
    end: int
    read_at: float
    latency: float

    @property
    def heard(self) -> float:
        """Monotonic time the block's first frame leaves the device."""
        return self.read_at + self.latency


def dac_latency(dac_time: float, current_time: float, reported: float) -> float:
    """Seconds from now until what is written now leaves the device, from PortAudio's
    `outputBufferDacTime` and `currentTime`; `reported` (the stream's latency) when those are
    missing (0) or not believable."""
    latency = dac_time - current_time
    if not 0.0 <= latency < MAX_SANE_LATENCY or not current_time:
        return reported
    return latency


class PlayoutClock:
    """What the callback has played, and when it is heard.

    Written by the PortAudio thread only (`read`), read by trio: each field is one whole
    value stored at once (a block is a tuple), so a stale read costs one block at most and a
    torn one cannot happen; trio acts on them after the callback woke it.
    """

    def __init__(self) -> None:
        self.last_block: Block | None = None  # the last block that played frames
        self.last_sound = 0.0  # monotonic time that block was read
        self.frames_played = 0  # frames taken from the ring, over every stream (status)
        self.quick_latency = 0.0  # the last DAC latency a quick (not steady) stream reported

    def read(
        self,
        start: int,
        count: int,
        now: float,
        dac_time: float,
        current_time: float,
        reported: float,
        *,
        quick: bool,
    ) -> None:
        """PortAudio thread: the callback took `count` (> 0) frames from ring position `start`
        at monotonic `now`, with the block's DAC and current times; `reported` is the stream's
        own latency, `quick` whether it is a quick stream (see dac_latency)."""
        latency = dac_latency(dac_time, current_time, reported)
        if quick:
            self.quick_latency = latency
        self.last_block = Block(start, start + count, now, latency)
        self.last_sound = now
        self.frames_played += count

    def heard_at(self, position: int, rate: int) -> float | None:
        """Monotonic time frame `position` leaves the device at `rate`, reckoned from the last
        block read: a frame before that block's start left as many frames earlier (a stream
        that starts takes several blocks at once, and the last of them leaves latest). None
        before any block was read."""
        block = self.last_block
        if block is None:
            return None
        return block.heard + (position - block.start) / rate

    def quiet_for(self, now: float) -> float:
        """Seconds since the last block that played frames was read (at monotonic `now`)."""
        return now - self.last_sound

    @property
    def latency(self) -> float | None:
        """How far behind the reads the device plays: the last block's DAC latency."""
        return self.last_block.latency if self.last_block else None
