"""Chimes: a short sound played before announcements of chosen priorities."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from playspeak.errors import ConfigError


def builtin_chime(rate: int) -> np.ndarray:
    """A soft two-note "ding-dong" (about 0.5 s), float32 mono."""
    notes = []
    for freq, seconds in ((880.0, 0.22), (660.0, 0.30)):
        t = np.arange(int(rate * seconds)) / rate
        tone = np.sin(2 * np.pi * freq * t) + 0.3 * np.sin(4 * np.pi * freq * t)
        envelope = np.minimum(1.0, t / 0.005) * np.exp(-t / (seconds / 3))
        notes.append(0.35 * tone * envelope)
    return np.concatenate(notes).astype(np.float32)


def decode_file(path: Path, rate: int) -> np.ndarray:
    """A whole sound file (WAV, MP3, …) as float32 mono at `rate`."""
    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
    parts: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            for frame in container.decode(audio=0):
                parts += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
        parts += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    except (OSError, av.error.FFmpegError) as e:
        raise ConfigError(f"chime.sound {path}: cannot decode it: {e}") from None
    if not parts:
        raise ConfigError(f"chime.sound {path}: no audio in it")
    return np.concatenate(parts).astype(np.float32)


def load_chime(sound: str, rate: int, channels: int) -> np.ndarray | None:
    """The configured chime as (frames, channels) float32 at the player's rate; None if off."""
    if not sound:
        return None
    mono = builtin_chime(rate) if sound == "builtin" else decode_file(Path(sound), rate)
    return np.repeat(mono.reshape(-1, 1), channels, axis=1)
