"""First sound inside playspeak. One command:

    .venv/bin/python -m bench.first_sound        # --runs N (default 20)

Runs the daemon in this process (open_daemon) on a private PulseAudio null sink, against the
local PlayAI server run as a child (`playspeak serve-local`: first byte after a fixed delay,
then 3x real time; `--embedded` uses the daemon's embedded server instead, which shares the
daemon's event loop), records the sink's monitor, and speaks the short clip `--runs` times
through the real control socket. It measures:

(a) from the first audio byte the link received (Reply._deliver) to the PortAudio callback
    that consumed the utterance's first frame; split into decoding (first byte to the first
    PCM handed to Player.play) and waiting for the callback;
(b) from the `ok` reply to the first sample with |x| > 300 at the monitor (calibrated with a
    click, bench.calibrate), minus the configured first-byte delay; and "net", also minus the
    clip's own lead-in (encoder delay + espeak's leading silence).

Instrumentation wraps Reply._deliver, Player.play and Player._callback in this process only,
restored afterwards; the package is not changed.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import trio

from . import material
from .calibrate import calibration_ms
from .procs import loadavg
from .report import fmt, p50, p95, span, table
from .server_proc import serve_local
from .soundcard import RATE, PulseNullSink, Recorder, in_process_sink

SETTLE = 0.3  # seconds after each utterance's `finished`, so its tail is recorded


@dataclass
class Probe:
    """Times (time.monotonic) of one utterance's path through the daemon."""

    armed: bool = False
    first_byte: float | None = None  # the link delivered the reply's first audio chunk
    first_pcm: float | None = None  # the decoder gave its first PCM
    handed: float | None = None  # the first PCM went to Player.play (the start cushion ended)
    start_pos: int | None = None  # the player position of the utterance's first frame
    consumed: float | None = None  # the callback that read that frame returned
    # per chunk fed to the decoder: (time, seconds of audio decoded before it)
    chunks: list[tuple[float, float]] = field(default_factory=list)
    decoded: float = 0.0

    def arm(self) -> None:
        self.first_byte = self.first_pcm = self.handed = self.start_pos = self.consumed = None
        self.chunks, self.decoded = [], 0.0
        self.armed = True

    def floor(self, trimmed: float, prefill: float) -> float | None:
        """Hindsight: the earliest start (seconds after the first byte) that this reply's
        actual chunk arrivals allowed without a gap. The stream reads `prefill` seconds ahead
        of what is heard, and the first `trimmed` seconds (leading silence) are never played,
        so a chunk that starts `s` seconds into the audio is needed `s - trimmed - prefill`
        seconds after the start (at once if that is negative)."""
        if self.first_byte is None or not self.chunks:
            return None
        return max(t - max(0.0, s - trimmed - prefill) for t, s in self.chunks) - self.first_byte


@contextmanager
def instrument(probe: Probe) -> Iterator[None]:
    """Wrap the link's delivery, the player's play() and its PortAudio callback to fill
    `probe`. Must be entered before the daemon opens its stream (the callback is bound then)."""
    from playspeak.audio.mp3 import Mp3Decoder
    from playspeak.audio.player import Player
    from playspeak.playai.link import Reply

    deliver, play, callback, decode = Reply._deliver, Player.play, Player._callback, Mp3Decoder.feed

    def decode_stamped(self: Mp3Decoder, chunk: bytes) -> list[np.ndarray]:
        arrived = time.monotonic()
        blocks = decode(self, chunk)
        if probe.armed:
            probe.chunks.append((arrived, probe.decoded))
            probe.decoded += sum(map(len, blocks)) / RATE
            if blocks and probe.first_pcm is None:
                probe.first_pcm = time.monotonic()
        return blocks

    async def deliver_stamped(self: Reply, chunk: bytes) -> None:
        if probe.armed and probe.first_byte is None:
            probe.first_byte = time.monotonic()
        await deliver(self, chunk)

    async def play_stamped(self: Player, pcm: np.ndarray) -> int:
        if probe.armed and probe.start_pos is None:
            probe.start_pos = self.frames_written
            probe.handed = time.monotonic()
        return await play(self, pcm)

    def callback_stamped(self: Player, outdata: Any, frames: int, ti: Any, status: Any) -> None:
        callback(self, outdata, frames, ti, status)
        block, target = self._last_block, probe.start_pos
        if (
            probe.consumed is None
            and target is not None
            and block is not None
            and block[0] <= target < block[1]
        ):
            probe.consumed = time.monotonic()

    Reply._deliver = deliver_stamped  # type: ignore[method-assign]
    Player.play = play_stamped  # type: ignore[method-assign]
    Player._callback = callback_stamped  # type: ignore[method-assign]
    Mp3Decoder.feed = decode_stamped  # type: ignore[method-assign]
    try:
        yield
    finally:
        Reply._deliver, Player.play, Player._callback = deliver, play, callback  # type: ignore[method-assign]
        Mp3Decoder.feed = decode  # type: ignore[method-assign]


@dataclass
class Run:
    """One utterance's figures in ms (NaN where a stamp is missing)."""

    byte_to_sound: float  # link's first byte -> first sound heard, minus the lead-in as played
    decode: float  # first byte -> the decoder's first PCM
    cushion: float  # the decoder's first PCM -> handed to Player.play (the start cushion)
    callback_wait: float  # Player.play -> the callback consumed the first frame
    device_path: float  # callback consumed -> heard, minus the lead-in as played
    floor: float  # the earliest gap-free start these chunk arrivals allowed (Probe.floor)
    ok_to_byte: float
    ok_to_sound: float  # minus the first-byte delay
    net: float  # also minus the clip's lead-in
    starved: int = 0  # times the player's ring ran dry during this utterance


async def speak_once(
    client: Any, text: str, ident: str, probe: Probe, recorder: Recorder
) -> tuple[float, int]:
    """Speak through the socket; returns (time of the ok reply, recorder index before)."""
    start = recorder.count
    probe.arm()
    await client.send_line(
        (json.dumps({"cmd": "speak", "text": text, "id": ident}) + "\n").encode()
    )
    reply = await client.next_event()
    t_ok = time.monotonic()
    if reply.get("event") != "ok":
        raise RuntimeError(f"speak refused: {reply}")
    event = await client.wait_for(ident)
    if event["event"] != "finished":
        raise RuntimeError(f"utterance {event['event']}: {event}")
    await trio.sleep(SETTLE)
    probe.armed = False
    return t_ok, start


def figures(
    probe: Probe, t_ok: float, heard: float | None, delay: float, lead_in: float, floor: float
) -> Run:
    nan = float("nan")

    def ms(a: float | None, b: float | None) -> float:
        return (b - a) * 1000 if a is not None and b is not None else nan

    to_sound = ms(t_ok, heard) - delay * 1000
    return Run(
        byte_to_sound=ms(probe.first_byte, heard) - lead_in * 1000,
        decode=ms(probe.first_byte, probe.first_pcm),
        cushion=ms(probe.first_pcm, probe.handed),
        callback_wait=ms(probe.handed, probe.consumed),
        device_path=ms(probe.consumed, heard) - lead_in * 1000,
        floor=floor * 1000,
        ok_to_byte=ms(t_ok, probe.first_byte),
        ok_to_sound=to_sound,
        net=to_sound - lead_in * 1000,
    )


async def run(args: argparse.Namespace) -> None:
    with in_process_sink() as (card, recorder):
        await _run(args, card, recorder)


async def _run(args: argparse.Namespace, card: PulseNullSink, recorder: Recorder) -> None:
    offset, how = await trio.to_thread.run_sync(calibration_ms, card, recorder, args.clicks)
    clip = await material.espeak_short()
    if args.embedded:
        runs, stats = await _measure(args, clip, recorder, offset, None)
    else:
        key, user = secrets.token_urlsafe(16), secrets.token_urlsafe(8)
        env = card.child_env(PLAYAI_API_KEY=key, PLAYAI_USER_ID=user)
        with serve_local(
            env, first_byte_delay=args.first_byte_delay, realtime_factor=args.realtime_factor
        ) as url:
            runs, stats = await _measure(args, clip, recorder, offset, (url, key, user))
    print_report(args, runs, clip, stats, how, offset)


async def _measure(
    args: argparse.Namespace,
    clip: material.Clip,
    recorder: Recorder,
    offset: float,
    service: tuple[str, str, str] | None,
) -> tuple[list[Run], dict[str, Any]]:
    """The daemon in this process, with the embedded server (service None) or the given
    (url, key, user); `--runs` utterances of `clip`."""
    from playspeak.client import Client
    from playspeak.config import (
        ApiConfig,
        AudioConfig,
        CacheConfig,
        Config,
        ControlConfig,
        FallbackConfig,
        LocalServerConfig,
        LogConfig,
    )
    from playspeak.daemon import open_daemon

    probe = Probe()
    url, key, user = service or ("", "", "")
    with tempfile.TemporaryDirectory(prefix="playspeak-bench-") as tmp:
        config = Config(
            api=ApiConfig(url=url, api_key=key, user_id=user),
            control=ControlConfig(socket=str(Path(tmp) / "control.sock")),
            audio=AudioConfig(
                samplerate=RATE,
                preroll_ms=args.preroll_ms,
                trim_leading_silence=not args.no_trim,
                latency=args.latency,
            ),
            local_server=LocalServerConfig(
                embedded="server",
                first_byte_delay=args.first_byte_delay,
                realtime_factor=args.realtime_factor,
                synth="espeak",
            ),
            log=LogConfig(level="warning"),
            # Every run from the service: a cached reply would skip it (and its delay).
            cache=CacheConfig(enabled=False),
            fallback=FallbackConfig(enabled=False),
        )
        with instrument(probe):
            async with open_daemon(config) as daemon:
                client = await Client.connect(daemon.socket_path)
                async with client:
                    await client.say(clip.text, wait=True)  # warm-up: connection, caches
                    await trio.sleep(SETTLE)
                    runs = []
                    lead_in = clip.played_lead_in(trimmed=not args.no_trim)
                    trimmed = clip.lead_in - lead_in
                    starved = daemon.player.stats.get("starved", 0)
                    for n in range(args.runs):
                        t_ok, start = await speak_once(client, clip.text, f"r{n}", probe, recorder)
                        index = recorder.first_loud(start)
                        heard = None if index is None else recorder.time_of(index) + offset / 1000
                        floor = probe.floor(trimmed, daemon.player.prefill_seconds)
                        run = figures(
                            probe,
                            t_ok,
                            heard,
                            args.first_byte_delay,
                            lead_in,
                            float("nan") if floor is None else floor,
                        )
                        run.starved = daemon.player.stats.get("starved", 0) - starved
                        starved += run.starved
                        runs.append(run)
                        recorder.trim(recorder.count)
                        print(f"  run {n + 1}/{args.runs}", end="\r", flush=True)
                stats = dict(daemon.player.stats)
    return runs, stats


def print_report(
    args: argparse.Namespace,
    runs: list[Run],
    clip: material.Clip,
    stats: dict[str, Any],
    how: str,
    offset: float,
) -> None:
    delay = args.first_byte_delay * 1000
    lead_in = clip.played_lead_in(trimmed=not args.no_trim) * 1000
    rows_spec = [
        ("link's first byte -> first sound, minus the lead-in", "byte_to_sound", "<= 45 ms"),
        ("  1. first byte -> the decoder's first PCM", "decode", ""),
        ("  2. first PCM -> Player.play (the start cushion)", "cushion", ""),
        ("  3. Player.play -> callback consumed the first frame", "callback_wait", ""),
        ("  4. callback consumed -> heard at the monitor", "device_path", ""),
        ("the service's floor: earliest gap-free start (hindsight)", "floor", ""),
        ("ok reply -> link's first byte", "ok_to_byte", f"(delay {delay:.0f})"),
        (
            f"ok -> first sound at monitor, minus {delay:.0f} ms delay",
            "ok_to_sound",
            "<= 60 ms",
        ),
        (f"net: also minus the lead-in as played, {lead_in:.1f} ms", "net", ""),
    ]
    rows = []
    for label, attr, target in rows_spec:
        values = [getattr(r, attr) for r in runs]
        limit = float(target.split()[1]) if target.startswith("<=") else None
        verdict = "" if limit is None else ("PASS" if p50(values) <= limit else "MISS")
        rows.append([label, fmt(p50(values)), fmt(p95(values)), span(values), target, verdict])
    missing = sum(1 for r in runs if np.isnan(r.ok_to_sound) or np.isnan(r.byte_to_sound))
    print()
    print(
        f"short clip ({clip.duration:.2f} s, lead-in {clip.lead_in * 1000:.1f} ms), "
        f"{len(runs)} runs ({missing} with a missing stamp), first-byte delay {delay:.0f} ms, "
        f"pace 3x; load average {loadavg()}"
    )
    print(
        f"settings: audio.preroll_ms {args.preroll_ms:g}, trim_leading_silence "
        f"{not args.no_trim} (lead-in as played {lead_in:.1f} ms)"
    )
    print(f"calibration: {how}; added {offset:+.1f} ms")
    print(
        f"player: {stats.get('samplerate')} Hz, block {stats.get('blocksize')} frames, "
        f"latency {args.latency} (reported {stats.get('latency', 0) * 1000:.1f} ms), underruns "
        f"{stats.get('underruns')} (device {stats.get('device_underflows')}, starved "
        f"{stats.get('starved')})"
    )
    print()
    print(table(["figure (ms)", "p50", "p95", "min–max", "target (p50)", ""], rows))
    dry = [r for r in runs if r.starved]
    if dry:
        wet = [r for r in runs if not r.starved]
        in_dry, in_wet = p50([r.ok_to_sound for r in dry]), p50([r.ok_to_sound for r in wet])
        print(
            f"\nthe player's ring ran dry in {len(dry)} of {len(runs)} utterances (the next chunk "
            f"came after the audio so far had played); (b) p50 {fmt(in_dry)} ms in those, "
            f"{fmt(in_wet)} ms in the others"
        )


def parse_args(argv: list[str]) -> argparse.Namespace:
    from playspeak.config import AudioConfig

    parser = argparse.ArgumentParser(prog="python -m bench.first_sound", description=__doc__)
    parser.add_argument("--runs", type=int, default=20, help="utterances measured (default 20)")
    parser.add_argument("--first-byte-delay", type=float, default=0.15, help="seconds")
    parser.add_argument("--clicks", type=int, default=30, help="calibration clicks; 0: -8.2 ms")
    parser.add_argument(
        "--realtime-factor",
        type=float,
        default=3.0,
        help="the server's pace (x real time); 0: as fast as it synthesizes (a local voice)",
    )
    parser.add_argument(
        "--preroll-ms",
        type=float,
        default=AudioConfig().preroll_ms,
        help="audio.preroll_ms (default: the daemon's default); 0 measures the software path "
        "alone: the first decoded frame goes to the player at once",
    )
    parser.add_argument(
        "--latency",
        default=AudioConfig().latency,
        help="audio.latency, the device buffer a stretch starts with (default: the daemon's)",
    )
    parser.add_argument("--no-trim", action="store_true", help="audio.trim_leading_silence = false")
    parser.add_argument(
        "--embedded",
        action="store_true",
        help="use the daemon's embedded server (same event loop) instead of serve-local",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    trio.run(run, parse_args(sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
