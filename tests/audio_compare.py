"""Shared analysis for tests that record what was played: reference decoding and alignment,
and the voice's fundamental frequency (F0)."""

from __future__ import annotations

import io
from dataclasses import dataclass

import av
import numpy as np

RATE = 48000  # the test sink's rate
SOUND_THRESHOLD = 300  # int16: louder than this is sound, as docs/benchmarks.md counts it


def reference_pcm(encoded: bytes, rate: int = RATE) -> np.ndarray:
    """Decode a whole file with PyAV's demuxer (not playspeak's decoder): (n, 1) float32."""
    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
    parts = []
    with av.open(io.BytesIO(encoded)) as container:
        for frame in container.decode(audio=0):
            parts += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    parts += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(parts).astype(np.float32).reshape(-1, 1)


def align(recorded: np.ndarray, played: np.ndarray) -> tuple[int, float, float]:
    """Lag of `played` (float, (n, 1)) in `recorded` (int16) by cross-correlation; the
    correlation coefficient and the gain at that lag."""
    rec = recorded.astype(np.float64)
    ref = played[:, 0].astype(np.float64) * 32768
    size = 1 << int(np.ceil(np.log2(len(rec) + len(ref))))
    xcorr = np.fft.irfft(np.fft.rfft(rec, size) * np.conj(np.fft.rfft(ref, size)), size)
    lag = int(np.argmax(xcorr[: len(rec) - len(ref) + 1]))
    segment = rec[lag : lag + len(ref)]
    corr = float(np.corrcoef(segment, ref)[0, 1])
    gain = float(segment @ ref / (ref @ ref))
    return lag, corr, gain


def loud(samples: np.ndarray, threshold: float = SOUND_THRESHOLD) -> np.ndarray:
    """Indices of the samples louder than the threshold (int16 scale)."""
    return np.flatnonzero(np.abs(samples) > threshold)


def loud_span(samples: np.ndarray, threshold: float = SOUND_THRESHOLD) -> int:
    """Samples from the first loud one to the last loud one (0 when silent)."""
    index = loud(samples, threshold)
    return int(index[-1] - index[0] + 1) if len(index) else 0


QUIET = 2  # |int16| below this is silence, which is also what an underrun leaves behind
GAP = RATE // 200  # 5 ms of silence splits the recording into islands of sound
ISLAND = RATE // 200  # 5 ms: shorter islands are too short to recognise


def islands(samples: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of each stretch of sound at least ISLAND long, split at silences of GAP."""
    quiet = np.concatenate([[True], np.abs(samples) < QUIET, [True]])
    edges = np.flatnonzero(np.diff(quiet.astype(np.int8)))
    spans: list[list[int]] = []
    for start, end in zip(edges[::2], edges[1::2], strict=True):
        if spans and start - spans[-1][1] < GAP:
            spans[-1][1] = end
        else:
            spans.append([start, end])
    return [(a, b) for a, b in spans if b - a >= ISLAND]


def locate(reference: np.ndarray, piece: np.ndarray) -> tuple[int, float, float]:
    """Where `piece` best matches `reference` (normalised cross-correlation, so a quiet piece
    is not drawn to a loud stretch), with the correlation and `piece`'s gain there."""
    size = 1 << int(np.ceil(np.log2(len(reference) + len(piece))))
    spectrum = np.fft.rfft(reference, size) * np.conj(np.fft.rfft(piece, size))
    xcorr = np.fft.irfft(spectrum, size)[: len(reference) - len(piece) + 1]
    energy = np.concatenate([[0.0], np.cumsum(reference**2)])
    window = energy[len(piece) :] - energy[: -len(piece)]
    lag = int(np.argmax(xcorr / np.sqrt(np.maximum(window, 1.0))))
    segment = reference[lag : lag + len(piece)]
    gain = piece @ segment / (segment @ segment)
    return lag, float(np.corrcoef(segment, piece)[0, 1]), float(gain)


def covered_share(recorded: np.ndarray, rendered: np.ndarray) -> tuple[float, float]:
    """Which share of `rendered` ((n, 1) float) the int16 `recorded` holds, and at what gain.

    Each island of sound in the recording is looked up in the rendering; an exact (scaled)
    copy covers its stretch of it. Unlike one alignment of the whole, this still recognises
    speech that an underrun on a busy machine split with silence (recovering from it may
    also drop a few ms, hence "share")."""
    reference = rendered[:, 0].astype(np.float64) * 32768
    heard = recorded.astype(np.float64)
    covered = np.zeros(len(reference), dtype=bool)
    gains = []
    for start, end in islands(heard):
        if end - start <= len(reference):
            lag, corr, gain = locate(reference, heard[start:end])
            if corr >= 0.99:
                covered[lag : lag + end - start] = True
                gains.append(gain)
    loud = np.abs(reference) > SOUND_THRESHOLD
    return float(covered[loud].mean()), float(np.median(gains)) if gains else 0.0


WHOLE = 0.99  # one alignment of the whole correlates this well: heard sample for sample
BROKEN_WHOLE = 0.95  # the share island by island when an underrun split it (covered_share)


@dataclass(frozen=True)
class Hearing:
    """How a rendering appears in a recording: as one whole, or island by island when
    PortAudio reported that the device ran dry (a real dropout on a busy machine, which splits
    what is heard with silence). A gap without such a report still fails, and so does one
    the player caused itself (its `starved` count): that would be audio the daemon lost."""

    corr: float  # of one alignment of the whole
    lag: int
    gain: float
    share: float  # island by island; 1.0 when the whole aligned
    underflows: int  # the player's stats["device_underflows"] over the recording

    @property
    def whole(self) -> bool:
        return self.corr >= WHOLE or (self.underflows > 0 and self.share >= BROKEN_WHOLE)

    def __str__(self) -> str:
        return (
            f"correlation {self.corr:.4f}, share {self.share:.3f}, gain {self.gain:.3f}, "
            f"{self.underflows} device underflows"
        )


def hearing(recorded: np.ndarray, rendered: np.ndarray, underflows: int) -> Hearing:
    """`rendered` ((n, 1) float) as heard in the int16 `recorded`, given the player's
    `stats["device_underflows"]` for the time recorded."""
    if len(rendered) > len(recorded):
        return Hearing(0.0, 0, 0.0, 0.0, underflows)
    lag, corr, gain = align(recorded, rendered)
    if corr >= WHOLE:
        return Hearing(corr, lag, gain, 1.0, underflows)
    share, island_gain = covered_share(recorded, rendered)

    return Hearing(corr, lag, island_gain, share, underflows)


def f0(samples: np.ndarray, rate: int = RATE) -> float:
    """The median fundamental frequency of the voiced 40 ms frames (autocorrelation)."""
    return float(np.median(f0_track(samples, rate)))


def f0_spread(samples: np.ndarray, rate: int = RATE) -> float:
    """How far the voice's F0 moves: log of its 90th over its 10th percentile."""
    track = f0_track(samples, rate)
    return float(np.log(np.percentile(track, 90) / np.percentile(track, 10)))


def f0_track(samples: np.ndarray, rate: int = RATE) -> np.ndarray:
    """The fundamental frequency of each voiced 40 ms frame (autocorrelation)."""
    x = samples.astype(np.float64).reshape(-1)
    size, found = int(0.04 * rate), []
    for start in range(0, len(x) - size, size):
        frame = x[start : start + size]
        if np.sqrt(np.mean(frame**2)) < 1000:
            continue
        frame = frame - frame.mean()
        ac = np.correlate(frame, frame, "full")[size - 1 :]
        low, high = rate // 400, rate // 60  # 60..400 Hz
        lag = low + int(np.argmax(ac[low:high]))
        if ac[lag] > 0.3 * ac[0]:
            found.append(rate / lag)
    return np.array(found)
