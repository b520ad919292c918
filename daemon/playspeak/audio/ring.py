"""A bounded, lock-guarded ring of float32 PCM frames between the trio side and PortAudio."""

from __future__ import annotations

import threading

import numpy as np


class PcmRing:
    """Fixed-capacity FIFO of (frames, channels) float32 PCM; one writer, one reader thread.

    Every method takes the lock only for a bounded copy (at most `capacity` frames), so the
    PortAudio callback never waits long. Positions are absolute: ``frames_read`` only grows,
    ``clear()`` moves it up to the write position, and only ``truncate()`` moves
    ``frames_written`` back (never below what was read).
    """

    def __init__(self, capacity: int, channels: int) -> None:
        if capacity <= 0 or channels <= 0:
            raise ValueError(f"capacity and channels must be positive: {capacity}, {channels}")
        self._buf = np.zeros((capacity, channels), dtype=np.float32)
        self._lock = threading.Lock()
        self._written = 0
        self._read = 0

    @property
    def capacity(self) -> int:
        return len(self._buf)

    @property
    def channels(self) -> int:
        return self._buf.shape[1]

    @property
    def used(self) -> int:
        """Frames buffered and not yet read."""
        with self._lock:
            return self._written - self._read

    @property
    def free(self) -> int:
        """Frames that a write could accept now."""
        return self.capacity - self.used

    @property
    def frames_written(self) -> int:
        return self._written

    @property
    def frames_read(self) -> int:
        return self._read

    def write(self, pcm: np.ndarray) -> int:
        """Copy as many frames of `pcm` as fit; returns how many. Never blocks beyond the lock.

        `pcm` is (frames, channels); a 1-D array is accepted for a mono ring.
        """
        if pcm.ndim == 1 and self.channels == 1:
            pcm = pcm.reshape(-1, 1)
        if pcm.ndim != 2 or pcm.shape[1] != self.channels:
            raise ValueError(f"expected (frames, {self.channels}) samples, got {pcm.shape}")
        with self._lock:
            count = min(len(pcm), self.capacity - (self._written - self._read))
            self._copy_in(pcm[:count], self._written % self.capacity)
            self._written += count
        return count

    def read_into(self, out: np.ndarray) -> int:
        """Copy up to len(out) frames into out[:n] and return n; out[n:] is left untouched.

        Meant for the PortAudio callback: no allocation, no waiting beyond the short lock.
        """
        return self.read_block(out)[1]

    def read_block(self, out: np.ndarray, upto: int | None = None) -> tuple[int, int]:
        """Like read_into, but also returns the absolute position of the first frame read;
        with `upto`, reads nothing at or beyond that absolute position."""
        with self._lock:
            position = self._read
            end = self._written if upto is None else min(self._written, upto)
            count = max(0, min(len(out), end - position))
            start = position % self.capacity
            first = min(count, self.capacity - start)
            out[:first] = self._buf[start : start + first]
            out[first:count] = self._buf[: count - first]
            self._read += count
        return position, count

    def peek(self, position: int, count: int) -> tuple[int, np.ndarray]:
        """A copy of up to `count` buffered frames from absolute `position` (moved into what
        is buffered) and where they start; the read position does not move."""
        with self._lock:
            start = min(max(position, self._read), self._written)
            count = max(0, min(count, self._written - start))
            first = start % self.capacity
            head = self._buf[first : first + count]
            return start, np.concatenate((head, self._buf[: count - len(head)]))

    def clear(self) -> int:
        """Drop everything buffered; returns how many frames were dropped."""
        with self._lock:
            dropped = self._written - self._read
            self._read = self._written
        return dropped

    def discard_until(self, position: int) -> int:
        """Drop the buffered frames before absolute `position` (later ones stay queued).

        Returns how many were dropped: none if `position` was already read, all if it lies
        beyond what was written.
        """
        with self._lock:
            target = min(max(position, self._read), self._written)
            dropped = target - self._read
            self._read = target
        return dropped

    def truncate(self, position: int) -> int:
        """Drop the buffered frames from absolute `position` on (earlier ones stay queued); the
        next write goes there, or at the read position if that is further. Returns how many
        were dropped."""
        with self._lock:
            target = min(max(position, self._read), self._written)
            dropped = self._written - target
            self._written = target
        return dropped

    def _copy_in(self, pcm: np.ndarray, start: int) -> None:
        first = min(len(pcm), self.capacity - start)
        self._buf[start : start + first] = pcm[:first]
        self._buf[: len(pcm) - first] = pcm[first:]
