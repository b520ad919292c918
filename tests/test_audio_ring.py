"""PcmRing: bounded, ordered, thread-safe; checked against a plain list model."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from playspeak.audio.ring import PcmRing


def ramp(start: int, count: int, channels: int = 1) -> np.ndarray:
    """Frames whose value is their absolute index (channel c adds c/10)."""
    frames = np.arange(start, start + count, dtype=np.float32).reshape(-1, 1)
    return frames + np.arange(channels, dtype=np.float32) / 10


def test_write_accepts_only_what_fits() -> None:
    ring = PcmRing(10, 1)
    assert ring.write(ramp(0, 7)) == 7
    assert ring.write(ramp(7, 7)) == 3
    assert (ring.used, ring.free, ring.frames_written) == (10, 0, 10)
    assert ring.write(ramp(10, 1)) == 0


def test_read_wraps_around_and_keeps_order() -> None:
    ring = PcmRing(8, 2)
    out = np.full((5, 2), -1.0, dtype=np.float32)
    ring.write(ramp(0, 6, 2))
    assert ring.read_into(out) == 5
    ring.write(ramp(6, 7, 2))  # wraps: 1 left + 7 new = 8 = capacity
    assert ring.used == 8
    got = np.zeros((8, 2), dtype=np.float32)
    assert ring.read_into(got) == 8
    np.testing.assert_array_equal(got, ramp(5, 8, 2))
    assert (ring.frames_read, ring.frames_written) == (13, 13)


def test_read_into_leaves_the_rest_of_out_untouched() -> None:
    ring = PcmRing(4, 1)
    ring.write(ramp(1, 2))
    out = np.full((4, 1), 9.0, dtype=np.float32)
    assert ring.read_into(out) == 2
    np.testing.assert_array_equal(out[:, 0], [1, 2, 9, 9])
    assert ring.read_into(out) == 0


def test_clear_drops_all_and_advances_the_read_position() -> None:
    ring = PcmRing(16, 1)
    ring.write(ramp(0, 12))
    ring.read_into(np.zeros((2, 1), np.float32))
    assert ring.clear() == 10
    assert (ring.used, ring.frames_read, ring.frames_written) == (0, 12, 12)
    assert ring.clear() == 0


def test_discard_until_keeps_the_later_frames() -> None:
    ring = PcmRing(16, 1)
    ring.write(ramp(0, 10))
    assert ring.discard_until(6) == 6
    assert ring.discard_until(3) == 0  # already gone
    out = np.zeros((8, 1), np.float32)
    assert ring.read_into(out) == 4
    np.testing.assert_array_equal(out[:4, 0], [6, 7, 8, 9])
    ring.write(ramp(10, 3))
    assert ring.discard_until(100) == 3  # beyond the end: everything
    assert ring.frames_read == ring.frames_written == 13


def test_read_block_stops_before_upto() -> None:
    ring = PcmRing(8, 1)
    ring.write(ramp(0, 6))
    out = np.full((4, 1), -1, np.float32)
    assert ring.read_block(out, upto=3) == (0, 3)
    np.testing.assert_array_equal(out[:, 0], [0, 1, 2, -1])
    assert ring.read_block(out, upto=3) == (3, 0)  # at the limit: nothing more
    assert ring.read_block(out, upto=2) == (3, 0)  # a limit already passed reads nothing
    assert ring.read_block(out) == (3, 3)


def test_peek_copies_without_reading_and_wraps() -> None:
    ring = PcmRing(8, 1)
    ring.write(ramp(0, 6))
    ring.read_into(np.zeros((5, 1), np.float32))
    ring.write(ramp(6, 6))  # frames 5..11, wrapping around the buffer's end
    start, frames = ring.peek(0, 100)  # moved up to the read position, clamped to the end
    assert start == 5
    np.testing.assert_array_equal(frames[:, 0], np.arange(5, 12))
    start, frames = ring.peek(9, 2)
    assert start == 9
    np.testing.assert_array_equal(frames[:, 0], [9, 10])
    frames[:] = -1  # a copy: the ring is unchanged
    assert ring.used == 7
    assert ring.peek(20, 4)[1].shape == (0, 1)


def test_mono_ring_accepts_1d_and_rejects_wrong_shapes() -> None:
    ring = PcmRing(4, 1)
    assert ring.write(np.ones(3, np.float32)) == 3
    with pytest.raises(ValueError, match="frames, 2"):
        PcmRing(4, 2).write(np.ones(3, np.float32))
    with pytest.raises(ValueError):
        PcmRing(0, 1)


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.integers(0, 40)),
        st.tuples(st.just("read"), st.integers(0, 40)),
        st.tuples(st.just("clear"), st.just(0)),
        st.tuples(st.just("skip"), st.integers(-5, 80)),  # to an absolute position
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(capacity=st.integers(1, 33), channels=st.integers(1, 2), ops=OPS)
def test_behaves_like_a_bounded_list(
    capacity: int, channels: int, ops: list[tuple[str, int]]
) -> None:
    ring = PcmRing(capacity, channels)
    model: list[int] = []  # frame indices still buffered
    written = read = 0
    for op, count in ops:
        if op == "write":
            accepted = ring.write(ramp(written, count, channels))
            assert accepted == min(count, capacity - len(model))
            model += list(range(written, written + accepted))
            written += accepted
        elif op == "read":
            out = np.full((count, channels), -1.0, dtype=np.float32)
            got = ring.read_into(out)
            assert got == min(count, len(model))
            expected, model = model[:got], model[got:]
            np.testing.assert_array_equal(out[:got, 0], np.array(expected, dtype=np.float32))
            assert (out[got:] == -1.0).all()
            read += got
        elif op == "clear":
            assert ring.clear() == len(model)
            read += len(model)
            model = []
        else:
            kept = [index for index in model if index >= count]
            assert ring.discard_until(count) == len(model) - len(kept)
            read += len(model) - len(kept)
            model = kept
        assert (ring.used, ring.free) == (len(model), capacity - len(model))
        assert (ring.frames_written, ring.frames_read) == (written, read)


def test_one_writer_one_reader_thread_keep_every_frame_in_order() -> None:
    ring = PcmRing(100, 1)
    total = 200_000
    received = np.zeros(total, dtype=np.float32)

    def reader() -> None:
        out = np.zeros((37, 1), dtype=np.float32)
        got = 0
        while got < total:
            n = ring.read_into(out)
            received[got : got + n] = out[:n, 0]
            got += n
            if not n:
                time.sleep(0)  # let the writer run (as PortAudio's period would)

    thread = threading.Thread(target=reader)
    thread.start()
    sent = 0
    while sent < total:
        accepted = ring.write(ramp(sent, min(53, total - sent)))
        assert ring.used <= ring.capacity
        sent += accepted
        if not accepted:
            time.sleep(0)
    thread.join(timeout=30)
    assert not thread.is_alive()
    np.testing.assert_array_equal(received, np.arange(total, dtype=np.float32))
