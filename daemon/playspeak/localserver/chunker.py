"""Cut one reply's audio, as it grows, into frames of random size (no I/O)."""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass

from playspeak.localserver.audio import Piece


@dataclass(frozen=True)
class Cut:
    """One binary frame: bytes ``start`` to ``end`` of the reply's audio."""

    start: int
    end: int
    data: bytes


class Chunker:
    """The header alone, then random sizes in [low, high] that ignore codec frame boundaries.

    Fed pieces as synthesis makes them; cuts exactly as if the whole audio had been there from
    the start (the same sizes drawn from ``rng`` in the same order), only later."""

    def __init__(self, rng: random.Random, low: int, high: int) -> None:
        self._rng, self._low, self._high = rng, low, high
        self._buffer = bytearray()  # audio not cut yet; its first byte is at self._position
        self._position = 0
        self._header: int | None = None  # on the first piece: bytes that go out alone
        self._size: int | None = None  # drawn for the next cut, not yet used
        self._marks: list[tuple[int, float]] = [(0, 0.0)]  # (byte offset, seconds) per piece
        self.finished = False  # no more pieces will come
        self.failed = False  # ... because synthesis failed part way

    @property
    def received(self) -> int:
        """Bytes fed so far."""
        return self._position + len(self._buffer)

    def add(self, piece: Piece) -> None:
        """Append the next piece of the reply."""
        if self._header is None:
            self._header = piece.header
        self._buffer += piece.data
        offset, _ = self._marks[-1]
        if self.received > offset:
            self._marks.append((self.received, piece.seconds))
        else:  # no bytes (an encoder's empty flush): only the duration moves
            self._marks[-1] = (offset, piece.seconds)

    def finish(self, *, failed: bool = False) -> None:
        """No more pieces: the remaining bytes make the last cut."""
        self.finished = True
        self.failed = failed

    def next_cut(self) -> Cut | None:
        """The next frame, or None until more is fed (or for good, once finished and empty)."""
        start = self._position
        if self._header:
            if self.received < self._header:
                return None
            end, self._header = self._header, 0
        else:
            if not self._buffer:
                return None
            if self._size is None:
                self._size = self._rng.randint(self._low, self._high)
            end = start + self._size
            if end > self.received:
                if not self.finished:
                    return None
                end = self.received
            self._size = None
        data = bytes(self._buffer[: end - start])
        del self._buffer[: end - start]
        self._position = end
        return Cut(start, end, data)

    def seconds_at(self, offset: int) -> float:
        """The audio time at a byte offset, interpolated within the piece that holds it.

        A binary search: a reply has a mark per piece (a sentence's 0.2 s slice), and this is
        asked once per chunk sent."""
        marks = self._marks
        i = bisect.bisect_left(marks, offset, lo=1, key=lambda mark: mark[0])
        if i == len(marks):
            return marks[-1][1]
        (b0, s0), (b1, s1) = marks[i - 1], marks[i]
        return s0 + (offset - b0) / (b1 - b0) * (s1 - s0)
