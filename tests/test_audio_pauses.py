"""audio.pauses: the one definition of a pause (the player's switch point, the benchmarks' and
tests' stretch-by-stretch comparison)."""

from __future__ import annotations

import numpy as np

from playspeak.audio.pauses import pauses

RATE = 1000  # one sample per millisecond keeps the positions readable


def test_runs_of_60_ms_below_the_level_count_even_at_either_end() -> None:
    samples = np.full(1000, 0.5, np.float32)
    samples[:70] = 0.0  # at the start
    samples[300:359] = 0.001  # 59 ms: too short
    samples[500:600] = -0.0019  # below the level on the negative side too
    samples[960:] = 0.0  # 40 ms at the end: too short
    assert pauses(samples, RATE) == [(0, 70), (500, 600)]
    samples[940:] = 0.0
    assert pauses(samples, RATE)[-1] == (940, 1000)


def test_every_channel_must_be_quiet_and_the_level_is_exclusive() -> None:
    stereo = np.zeros((200, 2), np.float32)
    stereo[50:150, 1] = 0.3  # the right channel speaks: no pause in the middle
    assert pauses(stereo, RATE) == []
    assert pauses(np.full(100, 0.002, np.float32), RATE) == []  # |x| == level is not quiet
    assert pauses(np.full(100, 65.0), RATE, level=0.002 * 32768) == [(0, 100)]  # int16 scale
