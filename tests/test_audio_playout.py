"""The playout clock (audio/playout.py) with synthetic blocks and timestamps: no device."""

from __future__ import annotations

import pytest

from playspeak.audio.playout import MAX_SANE_LATENCY, Block, PlayoutClock, dac_latency

RATE = 48000
BLOCK = 480  # 10 ms


def test_no_block_read_yet_knows_nothing() -> None:
    clock = PlayoutClock()
    assert clock.heard_at(0, RATE) is None
    assert clock.latency is None
    assert (clock.frames_played, clock.quick_latency) == (0, 0.0)


def test_a_frame_is_heard_the_dac_latency_after_its_block_was_read() -> None:
    clock = PlayoutClock()
    # read at t=100.0; PortAudio says the block reaches the DAC 40 ms after currentTime
    clock.read(0, BLOCK, 100.0, dac_time=5.040, current_time=5.0, reported=0.06, quick=True)
    assert clock.last_block == Block(0, BLOCK, 100.0, pytest.approx(0.04))
    assert clock.heard_at(0, RATE) == pytest.approx(100.04)
    assert clock.heard_at(BLOCK, RATE) == pytest.approx(100.05)  # the next block's first frame
    assert clock.latency == pytest.approx(0.04)
    assert clock.quick_latency == pytest.approx(0.04)
    assert (clock.frames_played, clock.last_sound) == (BLOCK, 100.0)


def test_frames_before_the_last_block_were_heard_that_much_earlier() -> None:
    # A starting stream takes several blocks at once: the last of them leaves latest, and the
    # first frames of the burst left as many frames before it.
    clock = PlayoutClock()
    for n in range(4):
        clock.read(n * BLOCK, BLOCK, 10.0, 1.1, 1.0, 0.06, quick=True)
    assert clock.heard_at(3 * BLOCK, RATE) == pytest.approx(10.1)
    assert clock.heard_at(0, RATE) == pytest.approx(10.07)
    assert clock.frames_played == 4 * BLOCK


@pytest.mark.parametrize(
    ("dac_time", "current_time"),
    [
        (1.0, 2.0),  # negative
        (2.0 + MAX_SANE_LATENCY, 2.0),  # a second or more
        (0.04, 0.0),  # no currentTime: the backend reports none
    ],
)
def test_an_unbelievable_dac_time_falls_back_to_the_reported_latency(
    dac_time: float, current_time: float
) -> None:
    assert dac_latency(dac_time, current_time, 0.06) == 0.06
    clock = PlayoutClock()
    clock.read(960, BLOCK, 50.0, dac_time, current_time, 0.06, quick=True)
    assert clock.latency == 0.06
    assert clock.heard_at(960, RATE) == pytest.approx(50.06)


def test_a_believable_dac_time_is_taken_up_to_the_limit() -> None:
    assert dac_latency(3.0, 3.0, 0.06) == 0.0
    assert dac_latency(3.0 + MAX_SANE_LATENCY - 0.01, 3.0, 0.06) == pytest.approx(0.99)


def test_a_steady_stream_leaves_the_quick_latency_alone() -> None:
    clock = PlayoutClock()
    clock.read(0, BLOCK, 1.0, 0.05, 0.01, 0.04, quick=True)
    clock.read(BLOCK, 2 * BLOCK, 1.01, 2.2, 2.0, 0.15, quick=False)
    assert clock.quick_latency == pytest.approx(0.04)
    assert clock.latency == pytest.approx(0.2)


def test_a_restarted_stream_takes_over_the_absolute_positions() -> None:
    clock = PlayoutClock()
    clock.read(0, BLOCK, 1.0, 7.04, 7.0, 0.04, quick=True)
    # the stream closed when idle; a new one starts 5 s later at position 48000 and its first
    # block has no believable DAC time yet: its own reported latency stands in
    clock.read(RATE, BLOCK, 6.0, 0.0, 0.0, 0.07, quick=True)
    assert clock.last_block == Block(RATE, RATE + BLOCK, 6.0, 0.07)
    assert clock.heard_at(RATE + BLOCK, RATE) == pytest.approx(6.08)
    assert clock.heard_at(0, RATE) == pytest.approx(5.07)  # (reckoned from the new block)
    assert clock.frames_played == 2 * BLOCK
    assert clock.quiet_for(6.5) == pytest.approx(0.5)
