"""Calibration of the recorder's clock: when does a click written at t0 show up on the monitor?

As docs/benchmarks.md's method does it: `pacat` plays into the null sink; at t0 a click (2 ms at
full scale, then 40 ms of silence so PulseAudio's prebuffer is met) is written to its stdin, and
the recorder's estimated capture time of the first loud sample is compared with t0. The p50 of
`offset = estimated - t0` is negative when the recorder's stamps run early; benchmarks add
`-offset` to raw figures. Our machine measured -8.2 ms (p50 of 62 clicks).
"""

from __future__ import annotations

import os
import statistics
import time

import numpy as np

from .procs import spawn, terminate
from .soundcard import PulseNullSink, Recorder

REFERENCE_OFFSET_MS = -8.2  # our machine's, used when calibration is skipped
_CLICK = np.concatenate([np.full(96, 30000, np.int16), np.zeros(1920, np.int16)]).tobytes()


def measure_click_offsets(card: PulseNullSink, recorder: Recorder, clicks: int = 30) -> list[float]:
    """Offsets in ms (estimated capture time - write time) of `clicks` clicks. Blocking:
    takes about 0.3 s per click. The pacat process is stopped by its pid."""
    pacat = spawn(
        [
            "pacat",
            "--playback",
            "-d",
            card.sink,
            "--raw",
            "--format=s16le",
            f"--rate={card.rate}",
            "--channels=1",
            "--latency-msec=10",
        ],
        card.child_env(),
        stdin=True,
    )
    assert pacat.stdin is not None
    offsets: list[float] = []
    try:
        time.sleep(0.5)  # pacat connects its stream
        for _ in range(clicks):
            start = recorder.count
            t0 = time.monotonic()
            os.write(pacat.stdin.fileno(), _CLICK)
            index = recorder.wait_loud(start, timeout=2.0)
            if index is not None:
                offsets.append((recorder.time_of(index) - t0) * 1000)
            time.sleep(0.25)
            recorder.trim(recorder.count)
    finally:
        pacat.stdin.close()
        terminate(pacat.pid)
        pacat.wait(timeout=5)
    return offsets


def calibration_ms(card: PulseNullSink, recorder: Recorder, clicks: int) -> tuple[float, str]:
    """What to add to raw recorder times (ms), and how it was found. `clicks` 0 reuses
    our machine's -8.2 ms."""
    if clicks <= 0:
        return -REFERENCE_OFFSET_MS, f"reused our machine's {REFERENCE_OFFSET_MS} ms"
    offsets = measure_click_offsets(card, recorder, clicks)
    if len(offsets) < clicks // 2:
        return -REFERENCE_OFFSET_MS, (
            f"only {len(offsets)}/{clicks} clicks heard: reused our machine's "
            f"{REFERENCE_OFFSET_MS} ms"
        )
    p50 = statistics.median(offsets)
    return -p50, (
        f"pacat click at t0 heard at {p50:+.1f} ms (p50 of {len(offsets)}, range "
        f"{min(offsets):+.1f} to {max(offsets):+.1f}); our machine measured "
        f"{REFERENCE_OFFSET_MS} ms"
    )
