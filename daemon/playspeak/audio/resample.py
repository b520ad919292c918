"""Turns decoded audio frames of any rate, layout and sample format into float32 player blocks."""

from __future__ import annotations

from collections.abc import Sequence

import av
import numpy as np
from av.audio.codeccontext import AudioCodecContext

_LAYOUTS = {1: "mono", 2: "stereo"}


def frame_from_array(samples: np.ndarray, rate: int) -> av.AudioFrame:
    """Wrap float32 samples shaped (frames, channels) as a packed "flt" AudioFrame."""
    channels = samples.shape[1]
    layout = _LAYOUTS.get(channels) or av.AudioLayout(channels).name
    frame = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(samples, dtype=np.float32).reshape(1, -1),
        format="flt",
        layout=layout,
    )
    frame.sample_rate = rate
    return frame


class PcmResampler:
    """Resample AudioFrames to float32 arrays shaped (frames, channels) at a fixed rate.

    The input may change rate or layout mid-stream (e.g. concatenated streams): the old
    resampler is then flushed and a new one built, so no samples are lost.
    """

    def __init__(self, out_rate: int, out_channels: int) -> None:
        if out_channels not in _LAYOUTS:
            raise ValueError(f"out_channels must be 1 or 2, not {out_channels}")
        if out_rate <= 0:
            raise ValueError(f"out_rate must be positive, not {out_rate}")
        self.out_rate = out_rate
        self.out_channels = out_channels
        self._resampler: av.AudioResampler | None = None
        self._input: tuple[str, str, int] | None = None

    def push(self, frame: av.AudioFrame) -> list[np.ndarray]:
        """Resample one frame; returns what the resampler lets out so far (maybe nothing)."""
        signature = (frame.format.name, frame.layout.name, frame.sample_rate)
        out: list[np.ndarray] = []
        if self._input != signature:
            out.extend(self.flush())
            self._input = signature
            self._resampler = av.AudioResampler(
                format="flt", layout=_LAYOUTS[self.out_channels], rate=self.out_rate
            )
        assert self._resampler is not None
        out.extend(self._to_arrays(self._resampler.resample(frame)))
        return out

    def push_array(self, samples: np.ndarray, rate: int) -> list[np.ndarray]:
        """Resample float32 samples shaped (frames, channels) at `rate`."""
        if len(samples) == 0:
            return []
        return self.push(frame_from_array(samples, rate))

    def flush(self) -> list[np.ndarray]:
        """End of input: return the samples still held in the resampler's filter."""
        if self._resampler is None:
            return []
        frames = self._resampler.resample(None)
        self._resampler = None
        self._input = None
        return self._to_arrays(frames)

    def _to_arrays(self, frames: Sequence[av.AudioFrame | None]) -> list[np.ndarray]:
        # A pass-through resampler hands back its input, and [None] when flushed.
        arrays = []
        for frame in frames:
            if frame is None or frame.samples == 0:
                continue
            array = frame.to_ndarray().reshape(-1, self.out_channels)
            arrays.append(array.astype(np.float32, copy=False))
        return arrays


def audio_decoder(codec: str) -> AudioCodecContext:
    """A decoding context for an audio codec (PyAV types create() as any kind of context)."""
    context = av.CodecContext.create(codec, "r")
    assert isinstance(context, AudioCodecContext)
    return context
