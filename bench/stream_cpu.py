"""What a running output stream costs by itself: CPU per second of a silent PortAudio stream
into a private PulseAudio null sink, for a few device buffer depths (`audio.latency`,
`audio.steady_latency`). Also the audio such a stream takes from its callback at once when it
starts, which speech must have in hand before it can start on that stream.

    .venv/bin/python -m bench.stream_cpu [--seconds 6] [--rounds 3]

Each (latency, block) stream is opened, started, left 0.5 s to settle, then this process's
CPU (all threads: PortAudio's callback thread and PulseAudio's client thread) is read over
`--seconds`; rounds alternate the configurations so that drifts in the machine's speed spread
over all of them. Prints the median per configuration.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

from .soundcard import RATE, PulseNullSink

# (latency asked of PortAudio, callback block in ms): playspeak's quick and steady streams
# (audio.latency 0.04 with 10 ms blocks; audio.steady_latency 0.1 with 20 ms blocks) and others
CONFIGS: list[tuple[float, float]] = [(0.04, 10), (0.06, 10), (0.1, 10), (0.1, 20), (0.15, 20)]


def process_cpu() -> float:
    """CPU seconds of every thread of this process (/proc schedstat: nanosecond resolution)."""
    total = 0
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/schedstat") as f:
            total += int(f.read().split()[0])
    return total / 1e9


def measure(sd: Any, latency: float, block_ms: float, seconds: float) -> tuple[float, float, float]:
    """(CPU ms per second, ms taken at once on start, reported output latency ms)."""
    calls: list[tuple[float, int]] = []

    def callback(outdata: Any, frames: int, time_info: Any, status: Any) -> None:
        calls.append((time.monotonic(), frames))
        outdata.fill(0)

    stream = sd.OutputStream(
        samplerate=RATE,
        channels=1,
        dtype="float32",
        blocksize=round(RATE * block_ms / 1000),
        latency=latency,
        callback=callback,
    )
    try:
        started = time.monotonic()
        stream.start()
        time.sleep(0.5)
        at_once = sum(frames for t, frames in calls if t - started < 0.005) / RATE * 1000
        before = process_cpu()
        time.sleep(seconds)
        cpu = (process_cpu() - before) / seconds * 1000
        return cpu, at_once, stream.latency * 1000
    finally:
        stream.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.stream_cpu", description=__doc__)
    parser.add_argument("--seconds", type=float, default=6.0, help="measured per stream")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    cpu: dict[tuple[float, float], list[float]] = {c: [] for c in CONFIGS}
    start: dict[tuple[float, float], tuple[float, float]] = {}
    with PulseNullSink() as card:
        os.environ.update(card.child_env())
        import sounddevice as sd

        for _ in range(args.rounds):
            for latency, block in CONFIGS:
                ms, at_once, reported = measure(sd, latency, block, args.seconds)
                cpu[(latency, block)].append(ms)
                start[(latency, block)] = (at_once, reported)
    print(f"silent {RATE} Hz mono stream, {args.rounds} rounds of {args.seconds:.0f} s")
    print("| latency | block | CPU ms per s (median) | rounds | taken at once ms | reported ms |")
    print("|---------|-------|-----------------------|--------|------------------|-------------|")
    for latency, block in CONFIGS:
        runs = cpu[(latency, block)]
        at_once, reported = start[(latency, block)]
        print(
            f"| {latency:.2f} s  | {block:.0f} ms | {statistics.median(runs):21.1f} | "
            f"{' '.join(f'{r:.1f}' for r in runs)} | {at_once:16.0f} | {reported:11.0f} |"
        )


if __name__ == "__main__":
    main()
