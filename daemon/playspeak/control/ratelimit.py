"""A per-client token bucket for control lines, free of I/O: the caller passes the time."""

from __future__ import annotations


class TokenBucket:
    """`rate` lines per second after a burst of `burst` lines; a rate of 0 admits everything.

    Times are seconds on any monotonic clock (the server passes `trio.current_time()`, so tests
    can drive it with a fake clock or with plain numbers).
    """

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.capacity = float(max(burst, 1))  # a burst of 0 would refuse every line
        self._tokens = self.capacity
        self._last = now

    @property
    def unlimited(self) -> bool:
        return self.rate <= 0

    def take(self, now: float) -> bool:
        """Admit one line at `now` (True) or refuse it (False). Never blocks."""
        if self.unlimited:
            return True
        # A clock that goes backwards (it should not) must not mint tokens.
        elapsed = max(0.0, now - self._last)
        self._last = max(self._last, now)
        self._tokens = min(self.capacity, self._tokens + elapsed * self.rate)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False
