"""The learned start cushion (audio/arrivals.py, UtteranceStart with a curve), I/O-free: chunk
arrivals of a paced service are simulated in plain numbers, as the local server paces them."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from playspeak.audio.arrivals import (
    HISTORY,
    MAX_RATE,
    MIN_RATE,
    ArrivalCurve,
    ArrivalModel,
    ReplyTrace,
)
from playspeak.audio.silence import UtteranceStart
from playspeak.speaker import START_MARGIN_SECONDS

RATE = 1000  # frames per second: one frame per millisecond keeps the arithmetic readable


def trace_of(arrivals: list[tuple[float, float]], decoded: float) -> ReplyTrace:
    """A trace from (seconds since the first chunk, seconds decoded before it)."""
    trace = ReplyTrace()
    ends = [before for _, before in arrivals[1:]] + [decoded]
    for (at, before), after in zip(arrivals, ends, strict=True):
        trace.add(100.0 + at, before, after)  # any clock: times are taken from the first
    return trace


def paced_reply(rng: random.Random, seconds: float, pace: float, chunk: tuple[float, float]):
    """(arrival time, chunk seconds) as the local server sends them: the first chunk at once
    (it was made within the first-byte delay), each later one when synthesis (`pace` times
    real time from then on) reaches its end."""
    chunks, sent = [], 0.0
    while sent < seconds:
        size = min(rng.uniform(*chunk), seconds - sent)
        sent += size
        chunks.append((0.0 if not chunks else (sent - chunks[0][1]) / pace, size))
    return chunks


def test_the_curve_is_the_slowest_rate_and_the_largest_deficit_at_it() -> None:
    model = ArrivalModel()
    # The first chunk brings 0.1 s (made before it was sent: not part of the pace), then 0.4 s
    # comes at 0.1 s and 0.4 s more at 0.2 s.
    model.learn(trace_of([(0.0, 0.0), (0.1, 0.1), (0.2, 0.5)], decoded=0.9))
    assert model.curve is not None
    assert model.curve.rate == pytest.approx(4.0)  # 0.8 s after the first chunk, in 0.2 s
    # short of 4x: nothing more by 0.1 s (0.4 due), 0.4 s by 0.2 s (0.8 due)
    assert model.curve.burst == pytest.approx(0.4)
    model.learn(trace_of([(0.0, 0.0), (0.25, 0.5), (0.5, 0.7)], decoded=1.5))  # 2x
    assert model.curve.rate == pytest.approx(2.0)
    shortfalls = [2 * 0.1 - 0.0, 2 * 0.2 - 0.4, 2 * 0.25 - 0.0, 2 * 0.5 - 0.2]
    assert model.curve.burst == pytest.approx(max(shortfalls))


def test_a_reply_of_few_chunks_teaches_nothing() -> None:
    model = ArrivalModel()
    model.learn(trace_of([(0.0, 0.0), (0.3, 0.2)], decoded=0.4))
    assert model.curve is None


@pytest.mark.parametrize(
    ("arrivals", "decoded", "rate"),
    [
        ([(0.0, 0.0), (0.001, 0.2), (0.002, 0.4)], 0.6, MAX_RATE),  # read at once: not a pace
        ([(0.0, 0.0), (1.0, 0.2), (2.0, 0.4)], 0.6, MIN_RATE),  # slower than real time
    ],
)
def test_the_rate_is_kept_within_bounds(
    arrivals: list[tuple[float, float]], decoded: float, rate: float
) -> None:
    model = ArrivalModel()
    model.learn(trace_of(arrivals, decoded))
    assert model.curve is not None and model.curve.rate == rate


def test_a_bursty_reply_is_forgotten_after_enough_smooth_ones() -> None:
    model = ArrivalModel()
    smooth = [(0.0, 0.0), (0.05, 0.15), (0.1, 0.3)]
    model.learn(trace_of([(0.0, 0.0), (0.5, 0.1), (0.6, 1.5)], decoded=1.9))  # 3x, late 2nd
    bursty = model.curve
    for _ in range(HISTORY - 1):
        model.learn(trace_of(smooth, decoded=0.45))
        assert model.curve is not None and model.curve.burst >= 3 * 0.5 - 1e-9
    model.learn(trace_of(smooth, decoded=0.45))
    assert model.curve is not None and bursty is not None
    assert model.curve.burst < bursty.burst


def test_the_trace_stops_where_back_pressure_may_begin() -> None:
    trace = ReplyTrace()
    trace.add(0.0, 0.0, 1.5)
    trace.add(0.5, 1.5, 2.5)
    trace.add(5.0, 2.5, 3.0)  # waited on a full buffer: not the service's pace
    assert [at for at, _ in trace.arrivals] == [0.0, 0.5]


def test_the_trace_counts_from_the_first_chunk_that_brought_audio() -> None:
    trace = ReplyTrace()
    assert trace.elapsed(10.0) == 0.0  # nothing yet
    trace.add(10.0, 0.0, 0.0)  # an ID3 tag alone: no audio
    assert trace.elapsed(10.5) == 0.0 and trace.arrivals == []
    trace.add(10.2, 0.0, 0.3)
    trace.add(10.4, 0.3, 0.5)
    assert trace.elapsed(10.5) == pytest.approx(0.3)
    assert trace.first == 0.3 and trace.arrivals == [(0.0, 0.0), (pytest.approx(0.2), 0.0)]


def test_wait_until_the_held_audio_lasts_until_the_curve_brings_more() -> None:
    curve = ArrivalCurve(rate=3.0, burst=0.3)
    # 0.2 s decoded after the first chunk: the curve passes it at (0.2 + 0.3) / 3 = 1/6 s;
    # at 0.05 s, what is held beyond the margin (0.15 - 0.05) covers 0.1 s of the rest
    assert curve.wait(0.05, 0.2, 0.15, 0.05) == pytest.approx(1 / 6 - 0.05 - 0.1)
    assert curve.wait(0.1, 0.2, 0.15, 0.05) == 0.0
    assert curve.wait(0.0, 0.2, 0.04, 0.05) == math.inf  # not even the device's share


def feed_reply(start: UtteranceStart, chunks: list[tuple[float, float]]) -> tuple[float, float]:
    """Drive `start` as the speaker does: feed each chunk when it arrives, release when the
    wait runs out first. (start time, seconds decoded by then)."""
    decoded = 0.0
    for n, (at, size) in enumerate(chunks):
        if n and start.wait(chunks[n - 1][0]) < at - chunks[n - 1][0]:
            return chunks[n - 1][0] + start.wait(chunks[n - 1][0]), decoded
        decoded += size
        pcm = start.feed([np.ones((round(size * RATE), 1), np.float32)], at)
        if pcm is not None:
            return at, decoded
    return chunks[-1][0], decoded


def test_starting_by_the_learned_curve_does_not_run_the_device_dry() -> None:
    # The local server's model: chunks of 30-250 ms of audio, each sent when synthesis (3x
    # real time) reaches its end. The speaker learns from every reply; each start is checked:
    # every chunk must be in before the device needs its first frame (the device takes
    # `margin` at once). The curve is learned, so a reply a little worse than the last HISTORY
    # can be short by a few ms: the speaker's START_MARGIN_SECONDS covers that.
    rng = random.Random(7)
    margin, preroll = 0.08, 10.0  # a preroll that never binds: the curve alone decides
    model = ArrivalModel()
    starts, shortfalls = [], []
    for n in range(HISTORY + 500):
        chunks = paced_reply(rng, 3.0, 3.0, (0.03, 0.25))
        if n >= HISTORY:
            start = UtteranceStart(
                RATE, trim=False, preroll_seconds=preroll, curve=model.curve, margin_seconds=margin
            )
            begin, _ = feed_reply(start, chunks)
            starts.append(begin)
            position, short = 0.0, 0.0
            for at, size in chunks:
                if at > begin:  # the callback wants this chunk's first frame by then:
                    short = max(short, at - (begin + position - margin))
                position += size
            shortfalls.append(short)
        trace, decoded = ReplyTrace(), 0.0
        for at, size in chunks:
            trace.add(at, decoded, decoded + size)
            decoded += size
        model.learn(trace)
    print(
        f"short starts {sum(s > 0 for s in shortfalls)} of 500, most {max(shortfalls) * 1e3:.1f} ms"
    )
    assert max(shortfalls) < START_MARGIN_SECONDS
    assert sum(s > 0 for s in shortfalls) <= 10
    # and it does not simply wait for everything: the median start is within 0.1 s
    assert sorted(starts)[len(starts) // 2] < 0.1


def test_without_a_curve_the_preroll_is_held_and_with_one_the_curve_decides() -> None:
    unlearned = UtteranceStart(RATE, trim=False, preroll_seconds=0.1, curve=None)
    assert unlearned.feed([np.ones((60, 1), np.float32)], 0.0) is None
    assert unlearned.wait(5.0) == math.inf  # time alone does not help: only more audio
    out = unlearned.feed([np.ones((50, 1), np.float32)], 0.01)
    assert out is not None and len(out) == 110
    # a slow, bursty service: more than the preroll is held, for as long as the curve says
    slow = ArrivalCurve(rate=1.0, burst=0.5)
    learned = UtteranceStart(RATE, trim=False, preroll_seconds=0.1, curve=slow, margin_seconds=0)
    assert learned.feed([np.ones((200, 1), np.float32)], 0.0) is None
    # more than the first chunk's 0.2 s only from 0.5 s on: the 0.2 s in hand covers the rest
    assert learned.wait(0.0) == pytest.approx(0.3)
    # 0.1 s more at 0.2 s: the curve passes it at 0.6 s, 0.3 s held covers only up to 0.5 s
    assert learned.feed([np.ones((100, 1), np.float32)], 0.2) is None
    assert learned.wait(0.2) == pytest.approx(0.1)
    assert learned.wait(0.3) == pytest.approx(0.0)


def test_release_plays_what_is_held_once_the_wait_ran_out() -> None:
    curve = ArrivalCurve(rate=3.0, burst=0.6)
    start = UtteranceStart(RATE, trim=False, preroll_seconds=1.0, curve=curve, margin_seconds=0.05)
    assert start.feed([np.ones((150, 1), np.float32)], 0.0) is None
    wait = start.wait(0.0)
    assert 0 < wait < math.inf
    assert start.feed([], wait / 2) is None  # not yet
    assert start.wait(wait) == 0.0
    out = start.release()
    assert out is not None and len(out) == 150 and start.started
    later = start.feed([np.ones((20, 1), np.float32)], wait + 0.1)
    assert later is not None and len(later) == 20  # after the start, everything at once
