"""Key echo as a screen reader does it, playspeak beside Speech Dispatcher with espeak-ng.

    .venv/bin/python -m bench.keys        # --trials N (default 20) --burst K (default 30)

Both servers private, on one null sink (bench.anchor's set-up: playspeak on its shipped
defaults, the phrase cache off), each reached over one long-lived SSIP connection as Orca's
libspeechd keeps one, and for each:

- **key echo**: `CANCEL SELF` then `KEY <letter>` on an idle server (or `CHAR`, or a short
  `SPEAK`) → the first sound at the sink, calibrated with clicks (bench.calibrate);
- **typing burst**: K keys 100 ms apart, each after `CANCEL SELF`, as typing is echoed: how many
  were heard before the next cut them (a key is heard when sound starts after its command, past
  the silence of the cancel, before the next key's command), and their first-sound times.

Letters whose names have no stop consonant are typed, so that the silence that separates two
keys is the cancel's and not a closure inside a letter's name.
"""

from __future__ import annotations

import argparse
import itertools
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .anchor import Servers, bench_servers, wait_quiet
from .procs import ensure_tools, loadavg
from .report import fmt, p50, p95, table
from .soundcard import Recorder

LETTERS = "aeflmnors"
SPACING = 0.1  # seconds between typed keys (a quick typist)
THRESHOLD = 300  # int16: louder than the sink's noise floor
GAP = 0.003  # silence this long after a key's command: what was playing was cut


class SsipLine:
    """One SSIP connection: a command, then its whole reply read (7xx events skipped)."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(str(path))
        self.buffer = b""
        self.command("SET SELF CLIENT_NAME bench:keys:main")

    def command(self, line: str) -> list[str]:
        self.sock.sendall(line.encode() + b"\r\n")
        return self._reply()

    def speak(self, text: str) -> None:
        self.command("SPEAK")
        self.sock.sendall(text.encode() + b"\r\n.\r\n")
        self._reply()

    def _reply(self) -> list[str]:
        lines: list[str] = []
        while True:
            while b"\r\n" not in self.buffer:
                data = self.sock.recv(65536)
                if not data:
                    raise RuntimeError("the server closed the SSIP connection")
                self.buffer += data
            raw, self.buffer = self.buffer.split(b"\r\n", 1)
            line = raw.decode(errors="replace")
            if line.startswith("7"):
                continue
            lines.append(line)
            if line[3:4] != "-":
                return lines

    def close(self) -> None:
        self.sock.close()


def onset(pcm: np.ndarray, start: int, end: int, rate: int) -> int | None:
    """The first loud sample in [start, end) after at least GAP of silence from `start`."""
    loud = np.abs(pcm[start:end].astype(np.int32)) > THRESHOLD
    need = max(1, round(GAP * rate))
    quiet = 0
    silent_seen = False
    for i, is_loud in enumerate(loud):
        if not is_loud:
            quiet += 1
            silent_seen = silent_seen or quiet >= need
        elif silent_seen:
            return start + i
        else:
            quiet = 0
    return None


def echo_ms(
    recorder: Recorder, offset_ms: float, conn: SsipLine, command: Callable[[SsipLine], None]
) -> float | None:
    """From just before `CANCEL SELF` + the key's command to the first sound (ms)."""
    wait_quiet(recorder)
    recorder.trim(recorder.count)
    mark = recorder.count
    t0 = time.monotonic()
    conn.command("CANCEL SELF")
    command(conn)
    index = recorder.wait_loud(mark, timeout=10.0)
    conn.command("CANCEL SELF")
    if index is None:
        return None
    return (recorder.time_of(index) - t0) * 1000 + offset_ms


def burst(
    recorder: Recorder, offset_ms: float, conn: SsipLine, count: int
) -> tuple[int, list[float]]:
    """`count` keys SPACING apart, each after a cancel: (keys heard, their first-sound ms)."""
    wait_quiet(recorder)
    recorder.trim(recorder.count)
    base = recorder.count
    sent: list[tuple[float, int]] = []
    due = time.monotonic()
    for letter in itertools.islice(itertools.cycle(LETTERS), count):
        time.sleep(max(0.0, due - time.monotonic()))
        sent.append((time.monotonic(), recorder.count))
        conn.command("CANCEL SELF")
        conn.command(f"KEY {letter}")
        due += SPACING
    wait_quiet(recorder)
    conn.command("CANCEL SELF")
    pcm = recorder.samples(base)
    rate = recorder.rate
    heard: list[float] = []
    for i, (t0, at) in enumerate(sent):
        # the recorder's count at the command is behind the sink by its capture lag: the
        # window ends where the next key's command was recorded, plus that slack
        end = sent[i + 1][1] - base + round(0.03 * rate) if i + 1 < len(sent) else len(pcm)
        found = onset(pcm, at - base, min(end, len(pcm)), rate)
        if found is not None:
            heard.append((recorder.time_of(base + found) - t0) * 1000 + offset_ms)
    return len(heard), heard


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20, help="key echoes per way (default 20)")
    parser.add_argument("--burst", type=int, default=30, help="keys per typing burst")
    parser.add_argument("--bursts", type=int, default=3, help="typing bursts per server")
    parser.add_argument("--clicks", type=int, default=30, help="calibration clicks; 0: -8.2 ms")
    parser.add_argument("--config", default="", help="TOML appended to playspeak's configuration")
    args = parser.parse_args()
    ensure_tools(["speech-dispatcher", "spd-say"])
    # bench.anchor's servers: the local voice direct, the cache off (every key synthesised)
    args.server, args.first_byte_delay, args.realtime_factor = False, 0.0, 0.0
    args.output_format = "raw"
    with bench_servers("bench-keys-", args) as (servers, recorder, offset_ms, how):
        return run(servers, recorder, offset_ms, how, args)


def run(
    servers: Servers, recorder: Recorder, offset_ms: float, how: str, args: argparse.Namespace
) -> int:
    conns = {
        "speechd + espeak-ng": SsipLine(servers.sd_socket),
        "playspeak": SsipLine(servers.ps_ssip),
    }
    letters = itertools.cycle(LETTERS)
    commands: dict[str, Callable[[SsipLine], None]] = {
        "KEY": lambda c: c.command(f"KEY {next(letters)}"),
        "CHAR": lambda c: c.command(f"CHAR {next(letters)}"),
        "short SPEAK": lambda c: c.speak(f"{next(letters)}."),
    }
    for conn in conns.values():  # warm-up: module start, page cache
        echo_ms(recorder, offset_ms, conn, commands["KEY"])
    echoes: dict[tuple[str, str], list[float]] = {}
    missed = 0
    for _ in range(args.trials):
        for what, command in commands.items():
            for name, conn in conns.items():
                value = echo_ms(recorder, offset_ms, conn, command)
                if value is None:
                    missed += 1
                else:
                    echoes.setdefault((name, what), []).append(value)
    bursts: dict[str, list[tuple[int, list[float]]]] = {}
    for _ in range(args.bursts):
        for name, conn in conns.items():
            bursts.setdefault(name, []).append(burst(recorder, offset_ms, conn, args.burst))
    for conn in conns.values():
        conn.close()
    print(f"# bench.keys: {args.trials} echoes per command and server, interleaved")
    print(f"calibration: {how}; load average {loadavg()}; {missed} echoes heard nothing")
    if args.config:
        print(f"playspeak with {args.config!r}")
    print()
    rows = [
        [name, what, fmt(p50(v)), fmt(p95(v)), str(len(v))] for (name, what), v in echoes.items()
    ]
    print(table(["server", "after CANCEL SELF", "first sound p50 ms", "p95 ms", "n"], rows))
    print()
    rows = []
    for name, runs in bursts.items():
        heard = [h for h, _ in runs]
        times = [t for _, ts in runs for t in ts]
        rows.append(
            [
                name,
                " / ".join(f"{h} of {args.burst}" for h in heard),
                fmt(p50(times)),
                fmt(p95(times)),
            ]
        )
    header = [f"typing burst, {SPACING * 1000:.0f} ms apart", "keys heard", "p50 ms", "p95 ms"]
    print(table(header, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
