"""playspeak against the usual ways of playing streamed TTS. One command:

    .venv/bin/python -m bench.compare            # --runs N (default 20), --quick for a smoke run

Starts a private PulseAudio null sink (recorded from its monitor) and the local PlayAI server
(first byte after a fixed delay, then 3x real time, chunks of 500-4000 bytes), installs mpv and
ffmpeg with apt-get when missing, and measures for each contender (bench.players):

- first sound: from the request (text written to playspeak's socket, to the buffering client's
  stdin, or the websocket command sent for mpv/ffplay) to the first sample with |x| > 300 at the
  monitor, calibrated with a click (bench.calibrate). Also from the server's first audio byte
  (stamped inside the server), which removes the service's own delay. Short clip and paragraph.
- added gap: three announcements back to back; each clip is located in the recording by
  cross-correlation, and the gap is the next clip's start minus this clip's end (the silence
  inside the clips is part of them, so it is not counted). Clips are located stretch by stretch
  between their pauses (material.locate_pieces): playspeak moves to its steady output stream
  inside a pause, which may come out a few ms longer or shorter; every stretch must still
  correlate >= 0.9 where it belongs, and the change counts as silence inserted in the clip.
- CPU seconds per second of audio over the first-sound runs (playspeak and the buffering client
  are long-lived: /proc/<pid>/stat around each utterance; mpv/ffplay run per utterance: wait4's
  rusage, start-up included), and peak RSS (VmHWM, or wait4's ru_maxrss).
- the decode path alone (bench.decode_speed).
"""

from __future__ import annotations

import argparse
import itertools
import math
import secrets
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio

from playspeak.localserver import open_local_server
from playspeak.localserver import session as server_session

from . import decode_speed, material
from .calibrate import calibration_ms
from .material import Clip
from .playai_client import Endpoint
from .players import FFPLAY, MPV, BufferThenPlay, Contender, PipePlayer, Playspeak
from .procs import ensure_tools, loadavg
from .report import fmt, p50, p95, span, table
from .soundcard import RATE, PulseNullSink, Recorder

REALTIME_FACTOR = 3.0
SETTLE = 0.3  # seconds of silence after each run, and a per-utterance player's head start
PLAYERS = ("playspeak", "buffer-then-play", "mpv", "ffplay")


@dataclass
class Measures:
    """Everything measured for one contender."""

    first: dict[str, list[float]] = field(default_factory=dict)  # clip -> ms from request
    after_byte: dict[str, list[float]] = field(default_factory=dict)  # ms from first byte
    cpu: dict[str, float] = field(default_factory=dict)  # clip -> CPU s per audio s
    gaps: list[float] = field(default_factory=list)  # ms
    inserted: list[float] = field(default_factory=list)  # ms of silence inside each clip
    worst_corr: float = 1.0  # lowest correlation of a located clip (sanity)
    bad_runs: int = 0
    peak_rss: float = math.nan  # MiB
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Bench:
    """What every run needs: the recorder, the calibration, the server's first-byte stamps."""

    recorder: Recorder
    calibration: float  # seconds added to recorder times
    first_bytes: list[float]
    clips: dict[str, Clip]
    trio_clips: list[Clip]


@asynccontextmanager
async def stamped_first_bytes() -> AsyncIterator[list[float]]:
    """Record time.monotonic() when the local server starts streaming each reply's audio
    (its first byte goes out at once). Patches the server class inside this process only."""
    stamps: list[float] = []
    original = server_session.Session._stream_audio

    async def stream_audio(self: Any, *args: Any) -> Any:
        stamps.append(time.monotonic())
        return await original(self, *args)

    server_session.Session._stream_audio = stream_audio  # type: ignore[method-assign]
    try:
        yield stamps
    finally:
        server_session.Session._stream_audio = original  # type: ignore[method-assign]


async def settle(recorder: Recorder) -> None:
    """Let trailing samples reach the recording, then forget everything before now."""
    await trio.sleep(SETTLE)
    recorder.trim(recorder.count)


async def first_sound_run(c: Contender, clip: Clip, b: Bench, m: Measures) -> float:
    """One utterance: its first sound, and the silence inserted inside it (dropouts: the
    recorded loud span minus the clip's own). Returns the CPU it cost."""
    rec = b.recorder
    start = rec.count
    played = await c.say([clip.text], timeout=3 * clip.duration + 30, settle=SETTLE)
    await trio.sleep(SETTLE)
    t0 = played.t0[0]
    recording = rec.samples(start)
    _, _, corr = material.locate_pieces(recording, clip)
    index = rec.first_loud(start)
    m.worst_corr = min(m.worst_corr, corr)
    if index is None or corr < 0.9:
        m.bad_runs += 1  # the clip was not heard
    else:
        heard = rec.time_of(index) + b.calibration
        m.first.setdefault(clip.name, []).append((heard - t0) * 1000)
        byte = next((s for s in b.first_bytes if s >= t0), math.nan)
        m.after_byte.setdefault(clip.name, []).append((heard - byte) * 1000)
        inserted = (material.loud_span(recording) - clip.loud_span) / RATE * 1000
        m.inserted.append(inserted)
    rec.trim(rec.count)
    return played.cpu


async def gap_run(c: Contender, b: Bench, m: Measures) -> None:
    """Three announcements back to back; the silence added between them, in ms."""
    rec = b.recorder
    start = rec.count
    total = sum(clip.duration for clip in b.trio_clips)
    await c.say([clip.text for clip in b.trio_clips], timeout=3 * total + 60)
    await trio.sleep(SETTLE)
    recording = rec.samples(start)
    ends, position = [], 0
    for clip in b.trio_clips:
        where, end, corr = material.locate_pieces(recording, clip, max(0, position - RATE // 5))
        m.worst_corr = min(m.worst_corr, corr)
        if corr < 0.9:
            m.bad_runs += 1
            break
        ends.append((where, end))
        position = end
    for (_, end), (begin, _) in itertools.pairwise(ends):
        m.gaps.append((begin - end) / RATE * 1000)
    rec.trim(rec.count)


async def measure(c: Contender, b: Bench, runs: int, gap_runs: int) -> Measures:
    """Start the contender, warm it up, run everything, read its peak memory, stop it."""
    m = Measures()
    load = loadavg()
    async with c.running():
        await c.say([b.clips["short"].text], timeout=60, settle=SETTLE)  # warm-up, not counted
        await settle(b.recorder)
        for clip in b.clips.values():
            cpu = 0.0
            for n in range(runs):
                cpu += await first_sound_run(c, clip, b, m)
                print(f"  {c.name} {clip.name} {n + 1}/{runs}", end="\r", flush=True)
            m.cpu[clip.name] = cpu / (runs * clip.duration)
        for _ in range(gap_runs):
            await gap_run(c, b, m)
        m.peak_rss = c.peak_rss_mib()
        m.extra = await c.extra()
    print(f"  {c.name}: done (load average {load} at its start, {loadavg()} at its end){' ' * 9}")
    return m


def contenders(
    names: list[str], endpoint: Endpoint, env: dict[str, str], settings: list[str]
) -> list[Contender]:
    make: dict[str, Callable[[], Contender]] = {
        "playspeak": lambda: Playspeak(endpoint, env, settings),
        "buffer-then-play": lambda: BufferThenPlay(endpoint, env),
        "mpv": lambda: PipePlayer("mpv", MPV, endpoint, env),
        "ffplay": lambda: PipePlayer("ffplay", FFPLAY, endpoint, env),
    }
    return [make[name]() for name in names]


def _cell(value: float, base: float, digits: int = 1) -> str:
    if math.isnan(value):
        return "—"
    if math.isnan(base) or abs(base) < 10 ** -(digits + 1) or value is base:
        return fmt(value, digits)
    return f"{fmt(value, digits)} ({value / base:.1f}×)"


def results_table(results: dict[str, Measures], clips: dict[str, Clip]) -> str:
    """One table: a row per figure, a column per contender, each cell with its ratio to
    playspeak's figure."""
    names = list(results)
    ps = results.get("playspeak")

    def row(label: str, get: Callable[[Measures], float], digits: int = 1) -> list[str]:
        base = get(ps) if ps is not None else math.nan
        return [label, *(_cell(get(results[n]), base, digits) for n in names)]

    rows = []
    for clip in clips.values():
        tag = f"{clip.name} ({clip.duration:.1f} s)"
        rows += [
            row(f"first sound, {tag}, p50 ms", lambda m, c=clip.name: p50(m.first.get(c, []))),
            row(f"first sound, {tag}, p95 ms", lambda m, c=clip.name: p95(m.first.get(c, []))),
            [f"first sound, {tag}, min–max ms"]
            + [span(results[n].first.get(clip.name, [])) for n in names],
            row(
                f"after first byte, {tag}, p50 ms",
                lambda m, c=clip.name: p50(m.after_byte.get(c, [])),
            ),
            row(
                f"after first byte, {tag}, p95 ms",
                lambda m, c=clip.name: p95(m.after_byte.get(c, [])),
            ),
        ]
    rows += [
        row("added gap, p50 ms", lambda m: p50(m.gaps)),
        row("added gap, p95 ms", lambda m: p95(m.gaps)),
        ["added gap, min–max ms"] + [span(results[n].gaps) for n in names],
    ]
    for clip in clips.values():
        rows.append(
            row(f"CPU s per audio s, {clip.name}", lambda m, c=clip.name: m.cpu[c], digits=3)
        )
    rows += [
        ["dropouts: runs with > 2 ms inserted in the clip"]
        + [
            f"{sum(v > 2 for v in results[n].inserted)} of {len(results[n].inserted)}"
            for n in names
        ],
        ["dropouts: most silence inserted in a clip, ms"]
        + [fmt(max(results[n].inserted, default=math.nan)) for n in names],
        row("peak RSS MiB", lambda m: m.peak_rss),
        ["runs counted / discarded"]
        + [
            f"{sum(len(v) for v in results[n].first.values())} / {results[n].bad_runs}"
            for n in names
        ],
        ["worst clip correlation"] + [f"{results[n].worst_corr:.3f}" for n in names],
    ]
    return table(["figure", *names], rows)


def targets(results: dict[str, Measures]) -> list[str]:
    """The issue's targets, each PASS or MISS with the figures it compares."""
    ps = results.get("playspeak")
    if ps is None:
        return []
    lines = []

    def check(ok: bool, text: str) -> None:
        lines.append(f"{'PASS' if ok else 'MISS'}  {text}")

    mine = p50(ps.after_byte.get("paragraph", []))
    mine_req = p50(ps.first.get("paragraph", []))
    for name, factor in (("mpv", 5), ("ffplay", 5), ("buffer-then-play", 20)):
        if name in results:
            theirs = p50(results[name].after_byte.get("paragraph", []))
            theirs_req = p50(results[name].first.get("paragraph", []))
            check(
                theirs >= factor * mine,
                f"first sound (paragraph, p50, after the first byte) >= {factor}x sooner than "
                f"{name}: {theirs / mine:.1f}x ({fmt(mine)} vs {fmt(theirs)} ms); from the "
                f"request: {theirs_req / mine_req:.1f}x ({fmt(mine_req)} vs {fmt(theirs_req)} ms)",
            )
    worst = max(ps.gaps, default=math.nan)
    check(
        p95(ps.gaps) <= 20,
        f"added gap <= 20 ms: p50 {fmt(p50(ps.gaps))}, p95 {fmt(p95(ps.gaps))}, "
        f"max {fmt(worst)} ms",
    )
    if "mpv" in results:
        mine_cpu, mpv_cpu = ps.cpu["paragraph"], results["mpv"].cpu["paragraph"]
        check(
            mine_cpu <= mpv_cpu / 2,
            f"CPU per audio second (paragraph) <= half of mpv's: {mine_cpu:.3f} vs "
            f"{mpv_cpu:.3f} ({mine_cpu / mpv_cpu:.2f}x)",
        )
    check(
        ps.peak_rss * 1.048576 <= 80,
        f"peak memory <= 80 MB: {ps.peak_rss:.1f} MiB = {ps.peak_rss * 1.048576:.1f} MB",
    )
    return lines


async def run(args: argparse.Namespace) -> None:
    with PulseNullSink() as card, card.recorder() as recorder:
        await _run(args, card, recorder)


async def _run(args: argparse.Namespace, card: PulseNullSink, recorder: Recorder) -> None:
    offset, how = await trio.to_thread.run_sync(calibration_ms, card, recorder, args.clicks)
    key, user = secrets.token_urlsafe(16), secrets.token_urlsafe(8)
    async with (
        stamped_first_bytes() as first_bytes,
        open_local_server(
            api_key=key,
            user_id=user,
            first_byte_delay=args.first_byte_delay,
            realtime_factor=REALTIME_FACTOR,
            seed=args.seed,
            synth="espeak",
        ) as server,
    ):
        clips = {
            "short": await material.render(server, "short", material.SHORT),
            "paragraph": await material.render(server, "paragraph", material.PARAGRAPH),
        }
        trio_clips = [
            await material.render(server, f"b2b{i}", text)
            for i, text in enumerate(material.BACK_TO_BACK)
        ]
        b = Bench(recorder, offset / 1000, first_bytes, clips, trio_clips)
        endpoint = Endpoint(server.base_url, key, user)
        print(f"calibration: {how}; adding {offset:+.1f} ms")
        print(f"load average before: {loadavg()}")
        results: dict[str, Measures] = {}
        for c in contenders(args.players, endpoint, card.child_env(), args.set):
            results[c.name] = await measure(c, b, args.runs, args.gap_runs)
        print(f"load average after: {loadavg()}")
    speeds = decode_speed.measure(clips["paragraph"].mp3)
    print_report(args, results, clips, trio_clips, speeds, how)


def print_report(
    args: argparse.Namespace,
    results: dict[str, Measures],
    clips: dict[str, Clip],
    trio_clips: list[Clip],
    speeds: dict[str, float],
    how: str,
) -> None:
    print()
    if args.set:
        print(f"playspeak settings: {', '.join(args.set)}")
    print(
        f"first-byte delay {args.first_byte_delay * 1000:.0f} ms, pace {REALTIME_FACTOR:g}x real "
        f"time; {args.runs} runs per clip, {args.gap_runs} back-to-back runs "
        f"({' + '.join(f'{c.duration:.2f}' for c in trio_clips)} s); clip lead-ins "
        + ", ".join(f"{c.name} {c.lead_in * 1000:.1f} ms" for c in clips.values())
    )
    print(f"calibration: {how}")
    print()
    print(results_table(results, clips))
    extra = results.get("playspeak", Measures()).extra
    if extra:
        print(
            f"\nplayspeak device: underruns {extra.get('underruns')} (device underflows "
            f"{extra.get('device_underflows')}, starved {extra.get('starved')}), latency "
            f"{extra.get('latency', 0) * 1000:.1f} ms, block {extra.get('blocksize')} frames"
        )
    print("\ndecode path alone (paragraph, chunks of 500–4000 bytes, 48 kHz float32 out):")
    for name, value in speeds.items():
        print(f"  {name}: {value:.0f} s of audio per CPU second")
    print()
    for line in targets(results):
        print(line)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__)
    parser.add_argument("--runs", type=int, default=20, help="runs per clip (default 20)")
    parser.add_argument("--gap-runs", type=int, default=5, help="back-to-back runs (default 5)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 runs, 1 gap run")
    parser.add_argument("--first-byte-delay", type=float, default=0.15, help="seconds")
    parser.add_argument("--clicks", type=int, default=30, help="calibration clicks; 0: -8.2 ms")
    parser.add_argument("--seed", type=int, default=7, help="the server's chunking seed")
    parser.add_argument(
        "--players", default=",".join(PLAYERS), help=f"comma-separated subset of {PLAYERS}"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="TABLE.KEY=VALUE",
        help="a playspeak setting for this run, e.g. audio.latency=0.04 (repeatable)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.gap_runs, args.clicks = 3, 1, min(args.clicks, 10)
    args.players = [p for p in args.players.split(",") if p]
    unknown = set(args.players) - set(PLAYERS)
    if unknown:
        parser.error(f"unknown players: {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    ensure_tools([p for p in args.players if p in ("mpv", "ffplay")])
    trio.run(run, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
