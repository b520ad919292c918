"""First sound of a cached phrase against an uncached one, side by side. One command:

    .venv/bin/python -m bench.cache        # --runs N (default 15)

The daemon runs in this process (open_daemon) on a private PulseAudio null sink, against the
local PlayAI server as a child (`playspeak serve-local`: first byte after --first-byte-delay,
then 3x real time), with the phrase cache in a temporary directory. Each run speaks, through
the real control socket, one phrase never said before (from the service) and then the cached
phrase (said once before the runs), alternating. Measured: from the moment the speak line is
sent to the first sample with |x| > 300 at the sink's monitor, calibrated with a click
(bench.calibrate); "net" also subtracts the clip's own lead-in as played (after the daemon's
leading-silence trim). The service's first-byte delay is NOT subtracted: it is what the cache
saves.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from . import material
from .calibrate import calibration_ms
from .procs import loadavg
from .report import fmt, p50, p95, span, table
from .server_proc import serve_local
from .soundcard import RATE, PulseNullSink, Recorder, in_process_sink

# Seconds after each `finished`: its tail is recorded, and the player has closed its stream
# (IDLE_STOP_SECONDS + the steady stream's latency + a watch period): each phrase starts on an
# idle device. (With a long stretch's steady 0.15 s stream still open, first sound waits
# behind that buffer whatever the source: ~200 ms, the player's choice, not the cache's.)
SETTLE = 0.8


async def speak(client: Any, text: str, ident: str, recorder: Recorder) -> tuple[float, int, str]:
    """Send one speak line; (time it was sent, recorder index before, source) once finished."""
    start = recorder.count
    line = (json.dumps({"cmd": "speak", "text": text, "id": ident}) + "\n").encode()
    sent = time.monotonic()
    await client.send_line(line)
    reply = await client.next_event()
    if reply.get("event") != "ok":
        raise RuntimeError(f"speak refused: {reply}")
    event = await client.wait_for(ident)
    if event["event"] != "finished":
        raise RuntimeError(f"utterance {event['event']}: {event}")
    await trio.sleep(SETTLE)
    return sent, start, event.get("source", "?")


async def run(args: argparse.Namespace) -> None:
    with in_process_sink() as (card, recorder):
        await _run(args, card, recorder)


async def _run(args: argparse.Namespace, card: PulseNullSink, recorder: Recorder) -> None:
    offset, how = await trio.to_thread.run_sync(calibration_ms, card, recorder, args.clicks)
    clip = await material.espeak_short()
    key, user = secrets.token_urlsafe(16), secrets.token_urlsafe(8)
    env = card.child_env(PLAYAI_API_KEY=key, PLAYAI_USER_ID=user)
    with serve_local(env, first_byte_delay=args.first_byte_delay, realtime_factor=3.0) as url:
        times, stats = await _measure(args, clip, recorder, offset, (url, key, user))
    lead_in = clip.played_lead_in(trimmed=True) * 1000
    rows = []
    for source in ("service", "cache"):
        raw = times[source]
        net = [t - lead_in for t in raw]
        rows.append(
            [f"{source}: text sent -> first sound", fmt(p50(raw)), fmt(p95(raw)), span(raw)]
        )
        rows.append(
            [
                f"{source}: net (minus lead-in {lead_in:.1f})",
                fmt(p50(net)),
                fmt(p95(net)),
                span(net),
            ]
        )
    print()
    print(
        f"short clip ({clip.duration:.2f} s), {args.runs} runs each, alternating; service "
        f"first-byte delay {args.first_byte_delay * 1000:.0f} ms, pace 3x; load average "
        f"{loadavg()}"
    )
    print(f"calibration: {how}; added {offset:+.1f} ms")
    print(
        f"player: {stats.get('samplerate')} Hz, block {stats.get('blocksize')} frames, reported "
        f"latency {stats.get('latency', 0) * 1000:.1f} ms, underruns {stats.get('underruns')}"
    )
    print()
    print(table(["figure (ms)", "p50", "p95", "min–max"], rows))
    if args.verbose:
        for source in ("service", "cache"):
            print(source, " ".join(f"{t:.0f}" for t in times[source]))
    goal = p50(times["cache"]) - lead_in
    print(
        f"\ncached net first sound p50 {fmt(goal)} ms: goal <= 15 ms: "
        f"{'PASS' if goal <= 15 else 'MISS'}"
    )


async def _measure(
    args: argparse.Namespace,
    clip: material.Clip,
    recorder: Recorder,
    offset: float,
    service: tuple[str, str, str],
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    from playspeak.client import Client
    from playspeak.config import (
        ApiConfig,
        AudioConfig,
        CacheConfig,
        Config,
        ControlConfig,
        LogConfig,
    )
    from playspeak.daemon import open_daemon

    url, key, user = service
    times: dict[str, list[float]] = {"service": [], "cache": []}
    with tempfile.TemporaryDirectory(prefix="playspeak-bench-cache-") as tmp:
        config = Config(
            api=ApiConfig(url=url, api_key=key, user_id=user),
            control=ControlConfig(socket=str(Path(tmp) / "control.sock")),
            audio=AudioConfig(samplerate=RATE),
            cache=CacheConfig(dir=str(Path(tmp) / "cache")),
            log=LogConfig(level="warning"),
        )
        async with open_daemon(config) as daemon:
            client = await Client.connect(daemon.socket_path)
            async with client:
                await client.say(clip.text, wait=True)  # the connection, and the cached phrase
                await trio.sleep(SETTLE)
                for n in range(args.runs):
                    fresh = f"{clip.text} Number {n}, {secrets.token_hex(3)}."  # never cached
                    for text, want in ((fresh, "service"), (clip.text, "cache")):
                        sent, start, source = await speak(client, text, f"{want}{n}", recorder)
                        if source != want:
                            raise RuntimeError(f"expected source {want}, got {source}")
                        index = recorder.first_loud(start)
                        if index is not None:
                            heard = recorder.time_of(index) + offset / 1000
                            times[want].append((heard - sent) * 1000)
                        recorder.trim(recorder.count)
                    print(f"  run {n + 1}/{args.runs}", end="\r", flush=True)
            stats = dict(daemon.player.stats)
    return times, stats


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.cache", description=__doc__)
    parser.add_argument("--runs", type=int, default=15, help="utterances of each kind")
    parser.add_argument("--first-byte-delay", type=float, default=0.15, help="seconds")
    parser.add_argument("--verbose", action="store_true", help="print every run's figure")
    parser.add_argument("--clicks", type=int, default=30, help="calibration clicks; 0: -8.2 ms")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    trio.run(run, parse_args(sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
