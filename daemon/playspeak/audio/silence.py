"""Dropping the silence at the start of an utterance, so that speech starts at once.

A streamed MP3 begins with the codec's own delay (about 1,100 samples of digital silence: 46 ms
at 24 kHz; a live stream has no LAME tag that would let the decoder trim it) and the speech
engine's leading pause. When an utterance starts on an idle device, that silence is nothing
but latency. Between queued utterances it is part of the natural pause, so the speaker trims
only utterances that start on an idle device.
"""

from __future__ import annotations

import math

import numpy as np

from .arrivals import ArrivalCurve

SILENCE_LEVEL = 1e-3  # |x| below this (-60 dBFS) is silence: far below speech, above dither
KEEP_SECONDS = 0.005  # silence kept before the first sound: the onset stays whole
MAX_TRIM_SECONDS = 0.5  # never drop more than this: a pause that long is meant


class LeadingSilenceTrimmer:
    """Drops leading float32 PCM below `level` until the first sound, keeping `keep_seconds`
    before it, and at most `max_seconds` in all; then passes everything through. I/O-free."""

    def __init__(
        self,
        samplerate: int,
        *,
        level: float = SILENCE_LEVEL,
        keep_seconds: float = KEEP_SECONDS,
        max_seconds: float = MAX_TRIM_SECONDS,
    ) -> None:
        self.level = level
        self._keep = max(0, round(samplerate * keep_seconds))
        self._budget = max(0, round(samplerate * max_seconds))  # frames we may still drop
        self._tail: np.ndarray | None = None  # the last `keep` silent frames seen
        self.trimmed = 0  # frames dropped so far
        self.done = self._budget == 0

    def feed(self, pcm: np.ndarray) -> np.ndarray:
        """The part of `pcm` (frames, channels) that should play; empty while it is silence."""
        if self.done:
            return pcm
        if self._tail is not None:
            pcm = np.concatenate([self._tail, pcm])
            self._tail = None
        loud = np.flatnonzero(np.abs(pcm).max(axis=1) >= self.level)
        first = int(loud[0]) if len(loud) else len(pcm)
        drop = min(max(0, first - self._keep), self._budget)
        self.trimmed += drop
        self._budget -= drop
        if len(loud) or self._budget == 0:
            self.done = True
            return pcm[drop:]
        self._tail = pcm[drop:]  # all silence, at most `keep` frames: maybe the onset's lead
        return pcm[:0]

    def flush(self) -> np.ndarray | None:
        """End of stream while still in silence: the few frames held back (so that an
        utterance of pure silence still plays something), else None."""
        tail, self._tail, self.done = self._tail, None, True
        return tail


class UtteranceStart:
    """How an utterance begins: its leading silence dropped (when it starts on an idle
    device), then audio held back so that the device does not run dry before the service's
    next chunk is in. With the service's learned `curve` (audio/arrivals.py) it starts as soon
    as the audio in hand lasts until the curve guarantees more, keeping `margin_seconds`
    buffered (the device's share); without one it holds `preroll_seconds` beyond that share
    (a stream that starts takes its device buffer from the ring at once: a pre-roll that
    counted it would leave only the rest to cover the wait for the next chunk). A pre-roll
    of 0 plays from the first frame. I/O-free: `feed` returns what may play now, `wait` how
    long to hold what it has."""

    def __init__(
        self,
        samplerate: int,
        *,
        trim: bool,
        preroll_seconds: float,
        curve: ArrivalCurve | None = None,
        margin_seconds: float = 0.0,
    ) -> None:
        max_trim = MAX_TRIM_SECONDS if trim else 0.0
        self._rate = samplerate
        self._trimmer = LeadingSilenceTrimmer(samplerate, max_seconds=max_trim)
        cushion = preroll_seconds + margin_seconds if preroll_seconds > 0 else 0.0
        self._preroll = round(cushion * samplerate)
        self._curve = curve
        self._margin = margin_seconds
        self._held: list[np.ndarray] = []
        self._decoded = 0  # frames the decoder gave, silence included
        self._first: int | None = None  # ... of those, from the first chunk of audio
        self.started = False

    def feed(self, blocks: list[np.ndarray], elapsed: float = 0.0) -> np.ndarray | None:
        """The PCM of `blocks` (as the decoder gave them) that may play now, in one array;
        `elapsed`: seconds since the reply's first chunk of audio arrived (the first feed)."""
        self._decoded += sum(map(len, blocks))
        if self._first is None:
            self._first = self._decoded
        self._hold(blocks)
        if not self._held or (not self.started and self.wait(elapsed) > 0):
            return None
        return self.release()

    def wait(self, elapsed: float) -> float:
        """Seconds until what is held may start if nothing more arrives: 0 now, inf when
        more audio must come first."""
        held = sum(map(len, self._held))
        if not held:
            return math.inf
        if self.started:
            return 0.0
        if self._curve is None:
            return 0.0 if held >= self._preroll else math.inf
        since_first = (self._decoded - (self._first or 0)) / self._rate
        return self._curve.wait(elapsed, since_first, held / self._rate, self._margin)

    def release(self) -> np.ndarray | None:
        """Everything held, to play now (the wait is over)."""
        if not self._held:
            return None
        self.started = True
        held, self._held = self._held, []
        return held[0] if len(held) == 1 else np.concatenate(held)

    def finish(self, blocks: list[np.ndarray]) -> np.ndarray | None:
        """The end of the stream (the decoder's last blocks): everything still held."""
        self._hold(blocks)
        if (tail := self._trimmer.flush()) is not None:
            self._held.append(tail)  # it was all silence: play the little kept back
        return self.release()

    def _hold(self, blocks: list[np.ndarray]) -> None:
        self._held += [pcm for block in blocks if len(pcm := self._trimmer.feed(block))]
