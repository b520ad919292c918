"""Capped, jittered, doubling waits between attempts: the link's reconnects and the sound
device's reopening share this one rule."""

from __future__ import annotations

import random


class Backoff:
    """``next()`` is the wait before the next attempt: the current delay, jittered by ±25 % so
    that many clients do not retry in step; the delay then doubles up to `maximum`.
    ``reset()`` after a success that counts (the caller decides what counts)."""

    def __init__(self, initial: float, maximum: float, jitter: float = 0.25) -> None:
        self.initial = initial
        self.maximum = maximum
        self.jitter = jitter
        self._delay = initial

    def next(self) -> float:
        wait = self._delay * random.uniform(1 - self.jitter, 1 + self.jitter)
        self._delay = min(self._delay * 2, self.maximum)
        return wait

    def reset(self) -> None:
        self._delay = self.initial
