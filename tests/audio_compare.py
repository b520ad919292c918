"""Shared analysis for tests that record what was played: reference decoding and alignment."""

from __future__ import annotations

import io

import av
import numpy as np

RATE = 48000  # the test sink's rate
SOUND_THRESHOLD = 300  # int16: louder than this is sound, as in BENCH_METHOD.md


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
