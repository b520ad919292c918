"""Pauses in PCM: runs of near-silence long enough to be a pause in speech.

The player moves a stretch of speech to its steady output stream inside one; the benchmarks and
tests use the same definition to compare what was heard stretch by stretch.
"""

from __future__ import annotations

import numpy as np

PAUSE_SECONDS = 0.06  # at least this long ...
PAUSE_LEVEL = 0.002  # ... below this level (|x|, -54 dBFS on the float scale)


def pauses(
    samples: np.ndarray, rate: int, level: float = PAUSE_LEVEL, seconds: float = PAUSE_SECONDS
) -> list[tuple[int, int]]:
    """(begin, end) of each run of at least `seconds` in which every sample (of every channel)
    has |x| < `level`; `samples` is (frames,) or (frames, channels). A run may touch either
    end of `samples`."""
    loudest = np.abs(samples) if samples.ndim == 1 else np.abs(samples).max(axis=1)
    quiet = np.concatenate(([False], loudest < level, [False]))
    edges = np.flatnonzero(np.diff(quiet.astype(np.int8)))
    shortest = round(rate * seconds)
    runs = zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True)
    return [(begin, end) for begin, end in runs if end - begin >= shortest]
