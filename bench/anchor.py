"""playspeak against what Linux users run today: Speech Dispatcher with espeak-ng.

    .venv/bin/python -m bench.anchor       # --trials N (default 15); --server [--first-byte-delay
                                           # S --realtime-factor X --output-format mp3|raw]
    .venv/bin/python -m bench.anchor --versus /tmp/base   # A/B: also playspeak from that tree

On one private PulseAudio null sink, side by side and interleaved trial by trial:

- Speech Dispatcher (its own private instance, espeak-ng module) reached with ``spd-say``;
- playspeak (``playspeak run``) on its shipped defaults (no service configured: the local voice
  speaks directly; only the phrase cache is off, so that every trial is synthesised), reached
  three ways: ``spd-say`` to its SSIP socket, ``playspeak say``, and a raw write of one line to
  its control socket; and when the extra playspeak[piper] is installed, a raw write asking for
  the Piper voice. ``--server`` speaks through the embedded local server instead (its costs
  set by the flags after it).

For a short sentence and a ~300-character text it measures command → first sound at the sink
(calibrated with clicks, bench.calibrate), and cancel (``spd-say -C`` to each) → silence, then
the CPU each server used over the whole run and its peak RSS (Speech Dispatcher: the server
plus its output module's process). It prints Markdown tables with p50/p95.

``--versus TREE`` (and/or ``--versus-config TOML``) also runs a second playspeak from another
source tree (e.g. ``git worktree add /tmp/base main``; ``''``: this one) on the same sink,
its raw writes interleaved with the first's: old and new side by side in one run.

Installs speech-dispatcher-espeak-ng with apt-get when it is missing (as root).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from playspeak.engines.piper import find_models

from .calibrate import calibration_ms
from .procs import cpu_seconds, ensure_tools, loadavg, peak_rss_mib
from .report import fmt, p50, p95, table
from .soundcard import PulseNullSink, Recorder

# Every utterance gets its own room number, so that no cache of either side (playspeak's
# embedded server keeps its last renders) answers a trial: each one is synthesised.
SHORT = "The front door of room {room} is open."
LONG = (
    "Good morning, room {room}. It is seven o'clock and the temperature outside is four "
    "degrees. The bus to the station leaves in twenty minutes, the washing machine has "
    "finished its programme, and the back door is still open. Remember to take the blue "
    "folder with you; the meeting was moved to half past nine."
)
SPEECHD_ESPEAK = "speech-dispatcher-espeak-ng"
VERSUS = "playspeak --versus, raw socket write"
QUIET_SECONDS = 0.4  # this long without sound: the utterance is over


def wait_quiet(recorder: Recorder, timeout: float = 30.0) -> None:
    """Block until the sink has been silent for QUIET_SECONDS (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.1)
        start = max(0, recorder.count - int(QUIET_SECONDS * recorder.rate))
        if recorder.first_loud(start) is None:
            return
    raise RuntimeError("the sink never fell silent")


def first_sound_ms(
    recorder: Recorder, offset_ms: float, act: Callable[[], None], stop: Callable[[], None]
) -> float | None:
    """Milliseconds from just before `act()` to the first sound at the sink (calibrated);
    then `stop()` it (the rest of a long text is not measured)."""
    wait_quiet(recorder)
    recorder.trim(recorder.count)
    mark = recorder.count
    t0 = time.monotonic()
    act()
    index = recorder.wait_loud(mark, timeout=10.0)
    stop()
    if index is None:
        return None
    return (recorder.time_of(index) - t0) * 1000 + offset_ms


def silence_after_cancel_ms(
    recorder: Recorder, offset_ms: float, speak: Callable[[], None], cancel: Callable[[], None]
) -> float | None:
    """Speak `LONG`; 1 s into the sound cancel it; ms from the cancel to the last sound."""
    wait_quiet(recorder)
    mark = recorder.count
    speak()
    if recorder.wait_loud(mark, timeout=10.0) is None:
        return None
    time.sleep(1.0)
    t0 = time.monotonic()
    cancel()
    time.sleep(1.0)  # what plays on after a cancel ends long before this
    start = recorder.count - int(1.5 * recorder.rate)
    samples = recorder.samples(start)
    import numpy as np

    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > 300)
    if len(loud) == 0:
        return None
    last = recorder.time_of(max(start, 0) + int(loud[-1]))
    return max(0.0, (last - t0) * 1000 + offset_ms)


class Servers:
    """Speech Dispatcher and playspeak, each private, both playing to the bench's sink."""

    def __init__(
        self,
        card: PulseNullSink,
        tmp: Path,
        args: argparse.Namespace,
    ) -> None:
        self.tmp = tmp
        env = card.child_env()
        self.sd_socket = tmp / "speechd.sock"
        self.speechd = subprocess.Popen(
            [
                *("speech-dispatcher", "-s", "-t", "0", "-c", "unix_socket"),
                *("-S", str(self.sd_socket), "-P", str(tmp / "speechd.pid"), "-L", str(tmp)),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.ps_socket = tmp / "playspeak.sock"
        self.ps_ssip = tmp / "playspeak-ssip.sock"
        server = (
            '[local_server]\nembedded = "server"\n'
            f"first_byte_delay = {args.first_byte_delay}\n"
            f"realtime_factor = {args.realtime_factor}\n"
            f'[api]\noutput_format = "{args.output_format}"\n'
        )
        # each trial synthesised, as speechd does: the phrase cache would answer repeats
        config = (server if args.server else "") + "[cache]\nenabled = false\n"
        self.ps_env = self._playspeak_env(env, "playspeak", config + args.config)
        self.playspeak = self._start(self.ps_env, "playspeak")
        # --versus: a second playspeak, from another source tree and/or with more settings
        self.versus: subprocess.Popen[bytes] | None = None
        self.vs_socket = tmp / "versus.sock"
        versus = getattr(args, "versus", None)
        if versus is not None:
            vs_env = self._playspeak_env(env, "versus", config + args.versus_config)
            if versus:
                vs_env["PYTHONPATH"] = str(Path(versus).resolve() / "daemon")
            self.versus = self._start(vs_env, "versus")
        self.env = env
        waited = [self.sd_socket, self.ps_socket, self.ps_ssip]
        for path in waited + ([self.vs_socket] if self.versus else []):
            deadline = time.monotonic() + 20
            while not path.exists():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{path} never appeared (see {tmp})")
                time.sleep(0.05)

    def _playspeak_env(self, env: dict[str, str], name: str, config: str) -> dict[str, str]:
        path = self.tmp / f"{name}.toml"
        path.write_text(config)
        ps_env = {
            **env,
            "PLAYSPEAK_SOCKET": str(self.tmp / f"{name}.sock"),
            "PLAYSPEAK_SSIP_SOCKET": str(self.tmp / f"{name}-ssip.sock"),
            "PLAYSPEAK_CONFIG": str(path),
        }
        for key in ("PLAYAI_API_KEY", "PLAYAI_USER_ID", "PLAYSPEAK_API_URL"):
            ps_env.pop(key, None)
        return ps_env

    def _start(self, env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "playspeak", "run"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(self.tmp / f"{name}.log", "wb"),  # the child holds it
        )

    def spd_say(self, target: Path, *args: str) -> None:
        env = {**self.env, "SPEECHD_ADDRESS": f"unix_socket:{target}"}
        subprocess.run(["spd-say", *args], env=env, check=False, stdout=subprocess.DEVNULL)

    def playspeak_say(self, text: str) -> None:
        # the installed command, as scripts run it (`python -m` would add runpy's imports)
        command = [str(Path(sys.executable).with_name("playspeak")), "say", text]
        subprocess.run(command, env=self.ps_env, check=False, stdout=subprocess.DEVNULL)

    def raw_write(self, text: str, target: Path | None = None) -> None:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(target or self.ps_socket))
            s.sendall(text.encode() + b"\n")

    def raw_write_voice(self, text: str, voice: str) -> None:
        self.raw_write(json.dumps({"cmd": "speak", "text": text, "voice": voice}))

    def speechd_pids(self) -> list[int]:
        """The server and its output modules (its children)."""
        pids = [self.speechd.pid]
        for task in Path(f"/proc/{self.speechd.pid}/task").iterdir():
            children = (task / "children").read_text().split()
            pids += [int(c) for c in children]
        return pids

    def stop(self) -> None:
        for process in (self.speechd, self.playspeak, self.versus):
            if process is None:
                continue
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


@contextlib.contextmanager
def bench_servers(
    prefix: str, args: argparse.Namespace
) -> Iterator[tuple[Servers, Recorder, float, str]]:
    """A private sink and its recorder, the calibration offset (and how it was found), then
    Speech Dispatcher and playspeak playing to that sink; all stopped on the way out."""
    with (
        tempfile.TemporaryDirectory(prefix=prefix) as tmpdir,
        PulseNullSink() as card,
        card.recorder() as recorder,
    ):
        offset_ms, how = calibration_ms(card, recorder, args.clicks)
        servers = Servers(card, Path(tmpdir), args)
        try:
            yield servers, recorder, offset_ms, how
        finally:
            servers.stop()


def _or_zero(read: Callable[[int], float], pid: int) -> float:
    """`read(pid)`, or 0 for a child that has just ended (a zombie has no memory or stat)."""
    try:
        return read(pid)
    except (OSError, ProcessLookupError):
        return 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=15, help="per way and text (default 15)")
    parser.add_argument(
        "--server",
        action="store_true",
        help="speak through the embedded local server (local_server.embedded = server)",
    )
    parser.add_argument("--first-byte-delay", type=float, default=0.0, help="with --server")
    parser.add_argument(
        "--realtime-factor",
        type=float,
        default=0.0,
        help="with --server: its pace (x real time); 0 (default): as fast as it synthesizes",
    )
    parser.add_argument(
        "--output-format",
        default="raw",
        choices=("raw", "mp3"),
        help="with --server: what playspeak asks of it; mp3 is encoded there, decoded here",
    )
    parser.add_argument("--no-piper", action="store_true", help="leave out the Piper row")
    parser.add_argument(
        "--config",
        default="",
        help="TOML appended to playspeak's configuration, to try a setting (e.g. "
        "'[audio]\\nlatency = \"low\"')",
    )
    parser.add_argument(
        "--versus",
        metavar="TREE",
        help="also a second playspeak from that source tree (its daemon/; '' for this one), "
        "raw writes interleaved with the first's: an A/B run",
    )
    parser.add_argument(
        "--versus-config", default="", help="TOML appended to the second playspeak's settings"
    )
    parser.add_argument(
        "--raw-only", action="store_true", help="with --versus: only the two raw-write rows"
    )
    parser.add_argument("--clicks", type=int, default=30, help="calibration clicks; 0: -8.2 ms")
    args = parser.parse_args()
    ensure_tools(["speech-dispatcher", "spd-say"])
    # The CLI's cost is measured as installed, with its bytecode compiled (a machine with
    # PYTHONDONTWRITEBYTECODE set would otherwise compile playspeak's modules at every call).
    import compileall

    import playspeak

    compileall.compile_dir(os.path.dirname(playspeak.__file__), quiet=1)
    if not Path("/usr/lib/speech-dispatcher-modules/sd_espeak-ng").exists():
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", SPEECHD_ESPEAK],
            check=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    with bench_servers("bench-anchor-", args) as (servers, recorder, offset_ms, how):
        return run(servers, recorder, offset_ms, how, args)


def run(
    servers: Servers, recorder: Recorder, offset_ms: float, how: str, args: argparse.Namespace
) -> int:
    sd, ps = servers.sd_socket, servers.ps_ssip
    ways: dict[str, Callable[[str], None]] = {
        "speechd + espeak-ng, `spd-say`": lambda text: servers.spd_say(sd, text),
        "playspeak, `spd-say` to its SSIP socket": lambda text: servers.spd_say(ps, text),
        "playspeak, `playspeak say`": servers.playspeak_say,
        "playspeak, raw socket write": servers.raw_write,
    }
    if servers.versus is not None:
        ways[VERSUS] = lambda text: servers.raw_write(text, servers.vs_socket)
        if args.raw_only:  # the A/B alone
            ways = {k: v for k, v in ways.items() if "raw" in k}
    piper = next((m.id for m in find_models()), None) if not args.no_piper else None
    if piper is not None:
        ways[f"playspeak, raw socket write, {piper}"] = lambda text: servers.raw_write_voice(
            text, piper
        )

    def stop_of(name: str) -> Callable[[], None]:
        """Cancel what that way started, through the same server (not measured)."""
        if name.startswith("speechd"):
            return lambda: servers.spd_say(sd, "-C")
        if name == VERSUS:
            return lambda: servers.raw_write('{"cmd": "cancel"}', servers.vs_socket)
        return lambda: servers.raw_write('{"cmd": "cancel"}')  # every utterance, any door

    rooms = itertools.count(100)
    for name, say in ways.items():  # warm-up: module start, websocket, page cache
        short = SHORT.format(room=next(rooms))
        first_sound_ms(recorder, offset_ms, lambda say=say, short=short: say(short), stop_of(name))  # type: ignore[misc]
    cpu0 = {
        "sd": sum(_or_zero(cpu_seconds, pid) for pid in servers.speechd_pids()),
        "ps": cpu_seconds(servers.playspeak.pid),
        "vs": cpu_seconds(servers.versus.pid) if servers.versus else 0.0,
    }
    results: dict[tuple[str, str], list[float]] = {}
    missed = 0
    for _ in range(args.trials):
        for text_name, text in (("short sentence", SHORT), ("~300-character text", LONG)):
            for name, say in ways.items():
                line = text.format(room=next(rooms))
                value = first_sound_ms(
                    recorder, offset_ms, lambda say=say, line=line: say(line), stop_of(name)
                )
                if value is None:
                    missed += 1
                else:
                    results.setdefault((name, text_name), []).append(value)
    cancels: dict[str, list[float]] = {}
    for _ in range(0 if args.raw_only else args.trials):
        for name, target in (("speechd + espeak-ng", sd), ("playspeak", ps)):
            value = silence_after_cancel_ms(
                recorder,
                offset_ms,
                lambda target=target: servers.spd_say(target, LONG.format(room=next(rooms))),
                lambda target=target: servers.spd_say(target, "-C"),
            )
            if value is not None:
                cancels.setdefault(name, []).append(value)
    cpu = {
        "sd": sum(_or_zero(cpu_seconds, pid) for pid in servers.speechd_pids()) - cpu0["sd"],
        "ps": cpu_seconds(servers.playspeak.pid) - cpu0["ps"],
        "vs": cpu_seconds(servers.versus.pid) - cpu0["vs"] if servers.versus else 0.0,
    }
    rss = {
        "sd": sum(_or_zero(peak_rss_mib, pid) for pid in servers.speechd_pids()),
        "ps": peak_rss_mib(servers.playspeak.pid),
        "vs": peak_rss_mib(servers.versus.pid) if servers.versus else 0.0,
    }
    print(f"# bench.anchor: {args.trials} trials per way and text, interleaved")
    print(f"calibration: {how}; load average {loadavg()}; playspeak: ", end="")
    if args.server:
        print(
            f"the embedded server, first-byte delay {args.first_byte_delay} s, pace "
            f"{args.realtime_factor or 'unpaced'}, output format {args.output_format}; ",
            end="",
        )
    else:
        print("shipped defaults (the direct local voice); ", end="")
    if args.config:
        print(f"with {args.config!r}; ", end="")
    if servers.versus is not None:
        print(f"--versus {args.versus!r} with {args.versus_config!r}; ", end="")
    print(f"{missed} trials heard nothing\n")
    rows = []
    for (name, text_name), values in results.items():
        rows.append([name, text_name, fmt(p50(values)), fmt(p95(values)), str(len(values))])
    print(table(["way", "text", "first sound p50 ms", "p95 ms", "n"], rows))
    print()
    rows = [[n, fmt(p50(v)), fmt(p95(v)), str(len(v))] for n, v in cancels.items()]
    print(table(["cancel (`spd-say -C`) → silence", "p50 ms", "p95 ms", "n"], rows))
    print()
    rows = [
        ["speechd + espeak-ng (server + module)", fmt(cpu["sd"], 2), fmt(rss["sd"])],
        ["playspeak", fmt(cpu["ps"], 2), fmt(rss["ps"])],
    ]
    if servers.versus is not None:  # (its CPU covers fewer trials: raw writes only)
        rows.append(["playspeak --versus", fmt(cpu["vs"], 2), fmt(rss["vs"])])
    print(table(["server", "CPU s over the run", "peak RSS MiB"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
