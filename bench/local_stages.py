"""Where a raw write's first sound goes on the shipped defaults (the direct local voice):

    .venv/bin/python -m bench.local_stages      # --runs N (default 24), --gap S (default 0.6)

Runs the daemon in this process (open_daemon, the default configuration with the phrase cache
off) on a private PulseAudio null sink, records the sink's monitor, and writes one plain line
per run to the real control socket, each with its own text (short sentences and ~300-character
texts alternating). Every stage is stamped with time.monotonic() the first time the run
reaches it, by wrapping the daemon's methods in this process only (restored afterwards; the
package is not changed). It prints each stage's time since the write, p50 / p95.

`--gap` is the silence between runs (seconds): the default lets the stream close (cold
starts); a short one measures the next line while a stream lingers.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import trio

from .anchor import LONG, SHORT
from .calibrate import calibration_ms
from .procs import loadavg
from .report import fmt, p50, p95, table
from .soundcard import THRESHOLD, Recorder, in_process_sink

LOUD = THRESHOLD / 32768  # the same threshold as float32 samples

STAGES = (
    ("read", "the control socket read the line"),
    ("built", "the utterance built and queued"),
    ("asked", "the engine asked (local reply made)"),
    ("espeak", "espeak-ng's first PCM read from its pipe"),
    ("reader", "the speaker read the first PCM"),
    ("play", "first PCM written to the player"),
    ("start", "the owner asked to start a stream"),
    ("opened", "stream opened (PortAudio)"),
    ("running", "stream started (PortAudio)"),
    ("callback", "first callback of the stream"),
    ("loud", "first non-silent block handed to PortAudio"),
    ("heard", "heard at the sink's monitor (calibrated)"),
)


class Stamps:
    """First time (monotonic) each stage was reached in the current run."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self.armed = False

    def arm(self) -> None:
        self.times, self.armed = {}, True

    def mark(self, stage: str) -> None:
        if self.armed and stage not in self.times:
            self.times[stage] = time.monotonic()


@contextmanager
def instrument(stamps: Stamps) -> Iterator[None]:
    """Wrap the stages' methods to stamp them. Entered before the daemon opens a stream."""
    from playspeak.audio.player import Player
    from playspeak.control.server import ControlServer
    from playspeak.engines.espeak import WavStream
    from playspeak.localvoice import LocalReply
    from playspeak.speaker import Speaker

    saved: list[tuple[Any, str, Any]] = []

    def wrap(cls: Any, name: str, make: Callable[[Any], Any]) -> None:
        original = getattr(cls, name)
        saved.append((cls, name, original))
        setattr(cls, name, make(original))

    def before(stage: str) -> Callable[[Any], Any]:
        def make(original: Any) -> Any:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                stamps.mark(stage)
                return original(*args, **kwargs)

            return wrapper

        return make

    def before_async(stage: str) -> Callable[[Any], Any]:
        def make(original: Any) -> Any:
            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                stamps.mark(stage)
                return await original(*args, **kwargs)

            return wrapper

        return make

    def wav_feed(original: Any) -> Any:
        def wrapper(self: Any, data: bytes) -> np.ndarray:
            pcm = original(self, data)
            if len(pcm):
                stamps.mark("espeak")
            return pcm

        return wrapper

    def receive(original: Any) -> Any:
        async def wrapper(self: Any) -> Any:
            item = await original(self)
            if item is not None:
                stamps.mark("reader")
            return item

        return wrapper

    def opened(original: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            stream = original(*args, **kwargs)
            stamps.mark("opened")
            return stream

        return wrapper

    def started(original: Any) -> Any:
        async def wrapper(self: Any) -> None:
            await original(self)
            stamps.mark("running")

        return wrapper

    def callback(original: Any) -> Any:
        def wrapper(self: Any, outdata: np.ndarray, *args: Any) -> None:
            stamps.mark("callback")
            original(self, outdata, *args)
            if stamps.armed and "loud" not in stamps.times and np.abs(outdata).max() > LOUD:
                stamps.mark("loud")

        return wrapper

    wrap(ControlServer, "_line", before("read"))
    wrap(Speaker, "submit", before("built"))
    wrap(LocalReply, "produce", before_async("asked"))
    wrap(WavStream, "feed", wav_feed)
    wrap(LocalReply, "receive_stamped", receive)
    wrap(Player, "play", before_async("play"))
    wrap(Player, "_start", before_async("start"))
    wrap(Player, "_open", opened)
    wrap(Player, "_start", started)
    wrap(Player, "_callback", callback)
    try:
        yield
    finally:
        for cls, name, original in reversed(saved):
            setattr(cls, name, original)


async def _measure(args: argparse.Namespace, recorder: Recorder, offset_ms: float) -> list[dict]:
    from playspeak.config import load_config
    from playspeak.daemon import open_daemon

    stamps = Stamps()
    runs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="playspeak-stages-") as tmp:
        path = Path(tmp) / "control.sock"
        toml = Path(tmp) / "playspeak.toml"
        toml.write_text(
            f'[control]\nsocket = "{path}"\n[log]\nlevel = "warning"\n'
            "[cache]\nenabled = false\n" + args.config  # each run synthesised
        )
        config = load_config(toml, env={})
        with instrument(stamps):
            async with open_daemon(config):
                for n in range(args.runs + 1):  # the first is a warm-up
                    text = (LONG if n % 2 else SHORT).format(room=100 + n)
                    await trio.sleep(args.gap)
                    mark = recorder.count
                    stamps.arm()
                    t0 = time.monotonic()
                    sock = trio.socket.socket(trio.socket.AF_UNIX)
                    with sock:
                        await sock.connect(str(path))
                        await sock.send(text.encode() + b"\n")
                        index = await trio.to_thread.run_sync(recorder.wait_loud, mark, 10.0)
                        await sock.send(b'{"cmd": "cancel"}\n')
                    stamps.armed = False
                    if index is None or not n:
                        continue
                    heard = recorder.time_of(index) + offset_ms / 1000
                    times = {**stamps.times, "heard": heard}
                    runs.append({k: (v - t0) * 1000 for k, v in times.items()})
                    print(f"  run {n}/{args.runs}", end="\r", file=sys.stderr, flush=True)
    return runs


async def _main(args: argparse.Namespace) -> None:
    with in_process_sink() as (card, recorder):
        offset, how = await trio.to_thread.run_sync(calibration_ms, card, recorder, args.clicks)
        runs = await _measure(args, recorder, offset)
    print(f"# bench.local_stages: {len(runs)} runs, gap {args.gap} s between them")
    print(f"calibration: {how}; load average {loadavg()}", end="")
    print(f"; with {args.config!r}\n" if args.config else "\n")
    rows = []
    previous = "write"
    for key, label in STAGES:
        values = [r[key] for r in runs if key in r]
        steps = [r[key] - r[previous] for r in runs if key in r and previous in r]
        if not values:
            rows.append([label, "-", "-", "-", "0"])
            continue
        step = fmt(p50(steps)) if steps else "-"
        rows.append([label, fmt(p50(values)), fmt(p95(values)), step, str(len(values))])
        previous = key
    print(table(["stage", "since the write p50 ms", "p95 ms", "step p50 ms", "n"], rows))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.local_stages", description=__doc__)
    parser.add_argument("--runs", type=int, default=24, help="lines measured (default 24)")
    parser.add_argument("--gap", type=float, default=0.6, help="seconds between runs")
    parser.add_argument(
        "--config", default="", help="TOML appended to the configuration, to try a setting"
    )
    parser.add_argument("--clicks", type=int, default=30, help="calibration clicks; 0: -8.2 ms")
    args = parser.parse_args(argv)
    trio.run(_main, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
