"""The benchmark material: espeak-ng speech from the local server, decoded as playspeak plays it.

Clips as docs/benchmarks.md's method has them: a short one (about 3 s) and a paragraph (about
10 s), plus three short announcements for the back-to-back test. Each clip knows its own lead-in
(first loud sample: encoder delay plus espeak's leading silence) and its decoded length, so the
figures can subtract the silence that is part of the audio itself.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from playspeak.audio.decoder import make_decoder
from playspeak.audio.pauses import PAUSE_LEVEL, pauses
from playspeak.config import DEFAULT_VOICE

from .soundcard import RATE, THRESHOLD

VOICE = DEFAULT_VOICE  # the daemon's default voice: every player asks for the same audio
SHORT = "The front door is open, and the garage light is on."
PARAGRAPH = (
    "Good evening. The washing machine has finished, and the laundry is ready to be hung up. "
    "The back door is still unlocked, the garage light is on, and the weather service "
    "expects rain after midnight."
)
BACK_TO_BACK = (
    "First announcement.",
    "The kettle has boiled.",
    "Dinner is ready in five minutes.",
)


@dataclass(frozen=True)
class Clip:
    """One utterance: its text, the MP3 bytes the server streams, and the decoded audio."""

    name: str
    text: str
    mp3: bytes
    pcm: np.ndarray  # int16-scaled float64 samples at RATE, as playspeak's decoder yields them

    @property
    def duration(self) -> float:
        return len(self.pcm) / RATE

    @property
    def lead_in(self) -> float:
        """Seconds from the clip's first sample to its first loud one."""
        return int(np.flatnonzero(np.abs(self.pcm) > THRESHOLD)[0]) / RATE

    def played_lead_in(self, trimmed: bool) -> float:
        """Seconds before the first loud sample as the daemon plays the clip from an idle
        device: all of lead_in, or with audio.trim_leading_silence what its trimmer leaves."""
        if not trimmed:
            return self.lead_in
        from playspeak.audio.silence import LeadingSilenceTrimmer

        trimmer = LeadingSilenceTrimmer(RATE)
        trimmer.feed((self.pcm / 32768).astype(np.float32).reshape(-1, 1))
        return self.lead_in - trimmer.trimmed / RATE

    @property
    def loud_span(self) -> int:
        """Samples from its first loud sample to its last one."""
        return loud_span(self.pcm)


def loud_span(samples: np.ndarray) -> int:
    """Samples from the first one with |x| > THRESHOLD to the last one (0 when silent)."""
    loud = np.flatnonzero(np.abs(samples.astype(np.float64)) > THRESHOLD)
    return int(loud[-1] - loud[0] + 1) if len(loud) else 0


def decode(mp3: bytes) -> np.ndarray:
    """The whole clip through playspeak's own decoder, 48 kHz mono, int16 scale."""
    decoder = make_decoder("mp3", out_rate=RATE, out_channels=1)
    blocks = decoder.feed(mp3) + decoder.flush()
    return np.concatenate(blocks)[:, 0].astype(np.float64) * 32768


async def render(server: Any, name: str, text: str) -> Clip:
    """Render `text` on the local server (this also fills its cache, so later requests are
    answered without synthesis time) and decode it."""
    mp3 = await server.render(text=text, voice=VOICE, output_format="mp3")
    return Clip(name, text, mp3, decode(mp3))


async def espeak_short() -> Clip:
    """`SHORT` as a local server with espeak-ng streams it (synthesis and encoding are
    deterministic: the same bytes)."""
    from playspeak.localserver import LocalServer, LocalServerSettings

    return await render(LocalServer(LocalServerSettings(synth="espeak")), "short", SHORT)


def locate(recording: np.ndarray, clip: Clip, start: int = 0) -> tuple[int, float]:
    """Where `clip` plays in `recording` (int16) at or after `start`: the index of the clip's
    first sample, by FFT cross-correlation, and the correlation coefficient there."""
    return _locate(recording, clip.pcm, start)


def pieces(pcm: np.ndarray) -> list[tuple[int, int]]:
    """(begin, end) of the stretches of `pcm` (int16 scale) between its pauses, as playspeak's
    player finds them (audio.pauses), cut in each pause's middle."""
    inside = [
        (a, b) for a, b in pauses(pcm, RATE, level=PAUSE_LEVEL * 32768) if a > 0 and b < len(pcm)
    ]
    cuts = [(a + b) // 2 for a, b in inside]
    return list(itertools.pairwise([0, *cuts, len(pcm)]))


def locate_pieces(
    recording: np.ndarray, clip: Clip, start: int = 0, slack: int = RATE // 20
) -> tuple[int, int, float]:
    """Where `clip` plays in `recording`, allowing each of its pauses to come out up to
    `slack` samples longer or shorter (playspeak may switch output streams in one; every
    other sample must be where it belongs): the index of its first sample, the index after
    its last, and the lowest correlation of its stretches (each located after the previous
    one). The first stretch is searched for from `start` on, as by locate()."""
    spans = pieces(clip.pcm)
    (begin, end), *rest = spans
    first, worst = _locate(recording, clip.pcm[begin:end], start)
    if first < 0:
        return -1, -1, 0.0
    expected = first + end
    for begin, end in rest:
        window = recording[: expected - begin + end + slack]
        where, corr = _locate(window, clip.pcm[begin:end], max(0, expected - slack))
        worst = min(worst, corr)
        if where < 0:
            return first, -1, 0.0
        expected = where + int(end - begin)
    return first, expected, worst


def _locate(recording: np.ndarray, ref: np.ndarray, start: int) -> tuple[int, float]:
    """Where `ref` (float64, int16 scale) is in `recording` at or after `start`, and the
    correlation coefficient there (-1, 0.0 if the recording is too short)."""
    rec = recording[start:].astype(np.float64)
    if len(rec) < len(ref):
        return -1, 0.0
    size = 1 << int(np.ceil(np.log2(len(rec) + len(ref))))
    xcorr = np.fft.irfft(np.fft.rfft(rec, size) * np.conj(np.fft.rfft(ref, size)), size)
    lag = int(np.argmax(xcorr[: len(rec) - len(ref) + 1]))
    segment = rec[lag : lag + len(ref)]
    corr = float(np.corrcoef(segment, ref)[0, 1]) if segment.std() > 0 else 0.0
    return start + lag, corr
