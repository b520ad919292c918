"""Interruption: how soon the old announcement falls silent, and how soon the new one is heard,
when an `important` message cuts in — with the busy websocket reopened (the default) or waited
out (`speech.interrupt_reconnect = false`).

    .venv/bin/python -m bench.interrupt [--trials 50] [--quick]

Method (docs/benchmarks.md's): a private PulseAudio null sink, its monitor recorded by parec in
this process, one clock (time.monotonic) for the interrupt and the recorded samples. The old
utterance is aligned against its own audio; "silent" is where the recording holds less than 1 %
of the energy the old utterance would have there. "New sound" is the first loud sample of the
interrupting message, minus the server's configured first-byte delay.
"""

from __future__ import annotations

import argparse
import bisect
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import trio

from bench.material import decode
from bench.soundcard import THRESHOLD, PulseNullSink, Recorder
from playspeak.config import DEFAULT_VOICE

KEY, USER = "bench-key-0123456789", "bench-user"
LONG = (
    "This weather report goes on and on about the clouds over the hills, the rain that "
    "will come tonight, and the wind from the north that follows it tomorrow morning."
)
URGENT = "Smoke alarm in the kitchen!"
FIRST_BYTE_DELAY = 0.15
WINDOW = 480  # 10 ms at 48 kHz


def locate(recording: np.ndarray, reference: np.ndarray) -> int:
    """Index in `recording` where `reference` (int16 scale) starts, by cross-correlation."""
    rec, ref = recording.astype(np.float64), reference.astype(np.float64)
    size = 1 << int(np.ceil(np.log2(len(rec) + len(ref))))
    xcorr = np.fft.irfft(np.fft.rfft(rec, size) * np.conj(np.fft.rfft(ref, size)), size)
    return int(np.argmax(xcorr[: len(rec) - len(ref) + 1]))


def silence_after(recording: np.ndarray, expected: np.ndarray, lag: int, start: int) -> int | None:
    """First index >= start where the recording has < 1 % of the energy the old utterance has
    at that point (windows where it is quiet anyway say nothing and are skipped)."""
    for i in range(start, len(recording) - WINDOW, WINDOW // 4):
        j = i - lag
        if j < 0 or j + WINDOW > len(expected):
            return i if j >= len(expected) else None
        want = float(np.sum(expected[j : j + WINDOW] ** 2))
        if want < (THRESHOLD * 3) ** 2 * WINDOW / 10:
            continue
        quiet = float(np.sum(recording[i : i + WINDOW].astype(np.float64) ** 2)) < want / 100
        # A real cut is followed by at least the first-byte delay of silence; a glitch is not.
        if quiet and np.max(np.abs(recording[i : i + 5 * WINDOW])) < THRESHOLD:
            return i
    return None


async def line(stream: trio.SocketStream, buffer: bytearray) -> dict:
    while b"\n" not in buffer:
        buffer += await stream.receive_some(65536)
    raw, _, rest = bytes(buffer).partition(b"\n")
    buffer[:] = rest
    return json.loads(raw)


async def until(stream: trio.SocketStream, buffer: bytearray, event: str, uid: str) -> None:
    while not ((e := await line(stream, buffer))["event"] == event and e.get("id") == uid):
        pass


async def trial(path: Path, recorder: Recorder, long_pcm: np.ndarray) -> tuple[float, float] | None:
    stream = await trio.open_unix_socket(str(path))
    buffer = bytearray()
    await stream.send_all(json.dumps({"cmd": "speak", "text": LONG, "id": "long"}).encode() + b"\n")
    await until(stream, buffer, "started", "long")
    begin = recorder.count
    # Interrupt somewhere in the first seconds (varied), counted in recorded samples.
    await trio.to_thread.run_sync(
        recorder.wait_count,
        begin + int(48000 * (0.6 + np.random.default_rng(begin).random() * 1.2)),
        10.0,
    )
    t_interrupt = time.monotonic()
    await stream.send_all(
        json.dumps(
            {"cmd": "speak", "text": URGENT, "id": "urgent", "priority": "important"}
        ).encode()
        + b"\n"
    )
    await until(stream, buffer, "finished", "urgent")
    await stream.aclose()
    # The analysis runs in a worker thread: this trio loop also serves the local server.
    return await trio.to_thread.run_sync(
        analyse, recorder, long_pcm, begin, recorder.count, t_interrupt
    )


def analyse(
    recorder: Recorder, long_pcm: np.ndarray, begin: int, end: int, t_interrupt: float
) -> tuple[float, float] | None:
    """(interrupt → silence, interrupt → new sound − first-byte delay) in ms, or None."""
    offset = max(0, begin - 48000)  # a second before `started` (the recorder is never trimmed)
    recording = recorder.samples(offset, end)
    lag = locate(recording[: 48000 * 3], long_pcm[: 48000 // 2])
    k0 = bisect.bisect_left(
        range(len(recording)), t_interrupt, key=lambda i: recorder.time_of(offset + i)
    )
    cut = silence_after(recording, long_pcm, lag, k0)
    if cut is None:
        return None
    loud = np.flatnonzero(np.abs(recording[cut:]) > THRESHOLD)
    if not len(loud):
        return None
    silent_ms = (recorder.time_of(offset + cut) - t_interrupt) * 1000
    new_ms = (recorder.time_of(offset + cut + int(loud[0])) - t_interrupt - FIRST_BYTE_DELAY) * 1e3
    return silent_ms, new_ms


async def run_mode(reconnect: bool, trials: int, card: PulseNullSink, tmp: Path) -> dict:
    """One mode: the daemon as its own process (so the recorder thread here is not starved by
    its work), the local server in this process."""
    from playspeak.localserver import open_local_server

    async with open_local_server(
        api_key=KEY, user_id=USER, first_byte_delay=FIRST_BYTE_DELAY, realtime_factor=3.0
    ) as server:
        config = tmp / f"bench-{reconnect}.toml"
        config.write_text(
            f"[audio]\nsamplerate = 48000\n[speech]\n"
            f'interrupt_reconnect = {str(reconnect).lower()}\n[log]\nlevel = "warning"\n'
        )
        socket_path = tmp / f"bench-{reconnect}.sock"
        notify_path = tmp / f"notify-{reconnect}"
        notify = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_DGRAM)
        await notify.bind(str(notify_path))
        env = card.child_env(
            PLAYAI_API_KEY=KEY,
            PLAYAI_USER_ID=USER,
            PLAYSPEAK_API_URL=server.base_url,
            PLAYSPEAK_SOCKET=str(socket_path),
            NOTIFY_SOCKET=str(notify_path),
        )
        long_pcm = decode(await server.render(text=LONG, voice=DEFAULT_VOICE))
        command = [sys.executable, "-m", "playspeak", "run", "--config", str(config)]
        results = []
        with card.recorder() as recorder:
            async with trio.open_nursery() as nursery:
                daemon = await nursery.start(
                    lambda task_status: trio.run_process(
                        command, env=env, check=False, task_status=task_status
                    )
                )
                with trio.fail_after(30):
                    while b"READY=1" not in await notify.recv(4096):
                        pass
                for _ in range(trials):
                    r = await trial(socket_path, recorder, long_pcm)
                    if r is not None:
                        results.append(r)
                status = await request(socket_path, {"cmd": "status"})
                daemon.terminate()
        notify.close()
    return {"results": results, "underruns": status["status"]["device"].get("underruns")}


async def request(path: Path, command: dict) -> dict:
    stream = await trio.open_unix_socket(str(path))
    buffer = bytearray()
    await stream.send_all(json.dumps(command).encode() + b"\n")
    reply = await line(stream, buffer)
    await stream.aclose()
    return reply


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def report(name: str, data: dict, trials: int) -> None:
    silent = [r[0] for r in data["results"]]
    new = [r[1] for r in data["results"]]
    print(
        f"{name:<22} {len(silent):>3}/{trials:<3} "
        f"{pct(silent, 50):>7.1f} {pct(silent, 95):>7.1f} {min(silent, default=0):>6.1f} "
        f"{max(silent, default=0):>6.1f}   "
        f"{pct(new, 50):>7.1f} {pct(new, 95):>7.1f} {min(new, default=0):>6.1f} "
        f"{max(new, default=0):>6.1f}   {data['underruns']}"
    )


async def main_async(trials: int) -> None:
    import tempfile

    with PulseNullSink() as card, tempfile.TemporaryDirectory() as tmp:
        fresh = await run_mode(True, trials, card, Path(tmp))
        wait = await run_mode(False, trials, card, Path(tmp))
    print(
        f"interrupt → silence and → new message's first sound (ms; new sound minus the "
        f"server's {FIRST_BYTE_DELAY * 1000:.0f} ms first-byte delay)"
    )
    print(
        f"{'mode':<22} {'n':>7} {'sil p50':>7} {'p95':>7} {'min':>6} {'max':>6}   "
        f"{'new p50':>7} {'p95':>7} {'min':>6} {'max':>6}   underruns"
    )
    report("fresh connection", fresh, trials)
    report("wait out the reply", wait, trials)
    if fresh["results"] and wait["results"]:
        a = statistics.median(r[1] for r in fresh["results"])
        b = statistics.median(r[1] for r in wait["results"])
        print(
            f"new sound p50: fresh {a:.1f} ms vs wait {b:.1f} ms → "
            f"{'fresh connection' if a <= b else 'waiting'} is faster"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="5 trials per mode")
    args = parser.parse_args()
    trio.run(main_async, 5 if args.quick else args.trials)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
