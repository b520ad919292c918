"""How soon an utterance may start playing, learned from how the service delivered its recent
replies.

A streaming service sends audio faster than real time, but in bursts: a chunk is sent once it
is synthesised, so a small first chunk may be followed by a large one that arrives late. Start
playing on the first chunk and the device can run dry (an audible gap); hold back a fixed
pre-roll and every utterance pays for the worst case. Instead each reply's chunk arrivals are
recorded, and the recent ones are summed up as an *arrival curve* (network calculus'
rate-latency bound): after a reply's first chunk, at least ``rate * t - burst`` seconds of audio
have been decoded by time ``t``. An utterance starts as soon as the audio in hand lasts until
that curve guarantees more. I/O-free: times come from the caller.
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
    """After a reply's first chunk, at least `rate * t - burst` seconds of audio are decoded
    by `t` seconds: the service's worst case over its recent replies."""

    rate: float
    burst: float

    def wait(self, elapsed: float, decoded: float, held: float, margin: float) -> float:
        """Seconds still to wait before the `held` audio may start playing, if nothing more
        arrives meanwhile: 0 to start now, inf when more audio must come first.

        `elapsed`: seconds since the reply's first chunk; `decoded`: seconds decoded so far;
        `held`: of those, what would play (after trimmed silence); `margin`: what must
        always stay buffered (the device's own buffer is filled from the ring at once)."""
        if held < margin:
            return math.inf
        catch_up = (decoded + self.burst) / self.rate  # when the curve passes what we have
        return max(0.0, catch_up - elapsed - (held - margin))


class ReplyTrace:
    """One reply's chunk arrivals: (seconds since its first chunk, seconds decoded before
    this chunk), over its first TRACE_SECONDS of audio."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[float, float]] = []
        self.decoded = 0.0  # seconds decoded after the last traced chunk
        self._first: float | None = None

    def add(self, arrived_at: float, decoded_before: float, decoded_after: float) -> None:
        if decoded_before >= TRACE_SECONDS:
            return
        if self._first is None:
            self._first = arrived_at
        self.arrivals.append((arrived_at - self._first, decoded_before))
        self.decoded = decoded_after

    @property
    def rate(self) -> float | None:
        """Seconds of audio delivered per second, over the trace; None if too short."""
        if len(self.arrivals) < MIN_CHUNKS or self.arrivals[-1][0] <= 0:
            return None
        return self.decoded / self.arrivals[-1][0]


class ArrivalModel:
    """The arrival curve of the last HISTORY replies that were long enough to tell."""

    def __init__(self, history: int = HISTORY) -> None:
        self._traces: deque[ReplyTrace] = deque(maxlen=history)
        self.curve: ArrivalCurve | None = None

    def learn(self, trace: ReplyTrace) -> None:
        if trace.rate is None:
            return
        self._traces.append(trace)
        rates = [t.rate for t in self._traces if t.rate is not None]
        rate = min(max(min(rates), MIN_RATE), MAX_RATE)
        burst = max(rate * t - before for trace in self._traces for t, before in trace.arrivals)
        self.curve = ArrivalCurve(rate, max(0.0, burst))
