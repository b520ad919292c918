"""How soon an utterance may start playing, learned from how the service delivered its recent
replies.

A streaming service sends audio faster than real time, but in bursts: a chunk is sent once it
is synthesised, so a small first chunk may be followed by a large one that arrives late. Start
playing on the first chunk and the device can run dry (an audible gap); hold back a fixed
pre-roll and every utterance pays for the worst case. Instead each reply's chunk arrivals are
recorded, and the recent ones are summed up as an *arrival curve* (network calculus'
rate-latency bound): ``t`` seconds after a reply's first chunk of audio, at least ``rate * t -
burst`` seconds more than that chunk brought have been decoded. The first chunk is left out of
the pace because it was made before it was sent (the service's first-byte delay), so its size
says nothing about when the next one comes. An utterance starts as soon as the audio in hand
lasts until that curve guarantees more. I/O-free: times come from the caller.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

HISTORY = 8  # replies remembered: a slow or bursty spell lasts this many replies
TRACE_SECONDS = 2.0  # audio per reply that is traced: later chunks may wait on back-pressure
MIN_CHUNKS = 3  # fewer arrivals say nothing about the service's pace
MIN_RATE = 1.0  # slower than real time: no cushion helps; assume real time
MAX_RATE = 8.0  # a burst of chunks read at once is not a rate to count on


@dataclass(frozen=True)
class ArrivalCurve:
    """`t` seconds after a reply's first chunk of audio, at least `rate * t - burst` seconds
    more than that chunk brought are decoded: the service's worst case over its recent
    replies."""

    rate: float
    burst: float

    def wait(self, elapsed: float, since_first: float, held: float, margin: float) -> float:
        """Seconds still to wait before the `held` audio may start playing, if nothing more
        arrives meanwhile: 0 to start now, inf when more audio must come first.

        `elapsed`: seconds since the reply's first chunk of audio; `since_first`: seconds
        decoded from the chunks after it; `held`: what would play of all decoded so far (after
        trimmed silence); `margin`: what must always stay buffered (the device's own buffer is
        filled from the ring at once)."""
        if held < margin:
            return math.inf
        catch_up = (since_first + self.burst) / self.rate  # when the curve passes what we have
        return max(0.0, catch_up - elapsed - (held - margin))


class ReplyTrace:
    """One reply's chunk arrivals from its first chunk of audio on (chunks before it that
    decoded to nothing are left out): (seconds since that chunk, seconds decoded after it
    before this chunk), over its first TRACE_SECONDS of audio."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[float, float]] = []
        self.first = 0.0  # seconds the first chunk of audio decoded to
        self.decoded = 0.0  # seconds decoded after the last traced chunk
        self._first_at: float | None = None

    def add(self, arrived_at: float, decoded_before: float, decoded_after: float) -> None:
        if decoded_before >= TRACE_SECONDS:
            return
        if self._first_at is None:
            if decoded_after <= decoded_before:
                return  # no audio yet (a tag, or less than a codec frame)
            self._first_at, self.first = arrived_at, decoded_after
        self.arrivals.append((arrived_at - self._first_at, max(0.0, decoded_before - self.first)))
        self.decoded = decoded_after

    def elapsed(self, now: float) -> float:
        """Seconds from the arrival of the first chunk of audio to `now` (0 before it)."""
        return 0.0 if self._first_at is None else now - self._first_at

    @property
    def rate(self) -> float | None:
        """Seconds of audio delivered per second after the first chunk, over the trace; None
        if too short."""
        if len(self.arrivals) < MIN_CHUNKS or self.arrivals[-1][0] <= 0:
            return None
        return (self.decoded - self.first) / self.arrivals[-1][0]


class ArrivalModel:
    """The arrival curve of the last HISTORY replies that were long enough to tell."""

    def __init__(self, history: int = HISTORY) -> None:
        self._traces: deque[ReplyTrace] = deque(maxlen=history)
        self.curve: ArrivalCurve | None = None

    @property
    def replies(self) -> int:
        """How many replies the curve is drawn from."""
        return len(self._traces)

    def learn(self, trace: ReplyTrace) -> None:
        if trace.rate is None:
            return
        self._traces.append(trace)
        rates = [t.rate for t in self._traces if t.rate is not None]
        rate = min(max(min(rates), MIN_RATE), MAX_RATE)
        burst = max(rate * t - before for trace in self._traces for t, before in trace.arrivals)
        self.curve = ArrivalCurve(rate, max(0.0, burst))
