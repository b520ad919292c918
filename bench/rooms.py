"""Rooms in step: two daemons start one announcement at its scheduled instant (`"at"`).

    .venv/bin/python -m bench.rooms        # --trials N (default 20), --lead S (default 1.0),
                                           # --clicks N (calibration, default 20), --config TOML

Two private PulseAudio servers, each with its null sink (room A, room B), each recorded by
`parec` in this process, so that one clock (time.monotonic) stamps both recordings. Each
recorder is calibrated with pacat clicks (bench.calibrate). Two daemons (``playspeak run``, on
their shipped defaults but for the phrase cache, off so that each trial is synthesised) play
one to each sink. A trial writes the same speak line with ``"at": now + lead`` to both control
sockets (a group announcement as the MQTT bridge hands it on), then takes each room's first
loud sample. Printed: per room the error against `at` and the skew between the rooms, p50 and
p95 of their absolute values, raw and calibrated.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from playspeak.schedule import to_monotonic
from playspeak.testing.soundcard import terminate

from .anchor import wait_quiet
from .calibrate import calibration_ms
from .procs import loadavg
from .report import fmt, p50, p95, span, table
from .soundcard import PulseNullSink, Recorder

TEXT = "Dinner is ready in room {trial}."  # a new text each trial: synthesised, not cached
ROOMS = ("room_a", "room_b")


class Room:
    """One sink, its recorder and its calibration, and one daemon playing to it."""

    def __init__(self, name: str, tmp: Path, config: str) -> None:
        self.name = name
        self.card = PulseNullSink(sink=name)
        self.card.start()
        self.recorder: Recorder = self.card.recorder()
        self.recorder.start()
        self.offset_ms, self.how = 0.0, ""
        self.socket = tmp / f"{name}.sock"
        toml = tmp / f"{name}.toml"
        toml.write_text("[cache]\nenabled = false\n" + config)
        env = self.card.child_env(PLAYSPEAK_SOCKET=str(self.socket), PLAYSPEAK_CONFIG=str(toml))
        for key in ("PLAYAI_API_KEY", "PLAYAI_USER_ID", "PLAYSPEAK_API_URL"):
            env.pop(key, None)
        self.log = (tmp / f"{name}.log").open("wb")
        self.daemon = subprocess.Popen(
            [sys.executable, "-m", "playspeak", "run"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.socket.exists():
            if time.monotonic() > deadline or self.daemon.poll() is not None:
                raise RuntimeError(f"{self.name}: the daemon did not start (see {self.log.name})")
            time.sleep(0.05)

    def send(self, line: str) -> None:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.socket))
            s.sendall(line.encode() + b"\n")
            s.recv(4096)  # the reply: the speak was taken

    def stop(self) -> None:
        terminate(self.daemon.pid, timeout=10)
        self.daemon.wait(timeout=5)
        self.log.close()
        self.recorder.stop()
        self.card.stop()


def trial(rooms: list[Room], number: int, lead: float) -> list[float | None]:
    """One announcement in both rooms; each room's raw error against `at` (ms)."""
    for room in rooms:
        wait_quiet(room.recorder)
        room.recorder.trim(room.recorder.count)
    marks = [room.recorder.count for room in rooms]
    at = time.time() + lead
    at_mono = to_monotonic(at, time.time(), time.monotonic())
    line = json.dumps({"cmd": "speak", "text": TEXT.format(trial=number), "at": at})
    for room in rooms:
        room.send(line)
    errors: list[float | None] = []
    for room, mark in zip(rooms, marks, strict=True):
        index = room.recorder.wait_loud(mark, timeout=lead + 10)
        errors.append(None if index is None else (room.recorder.time_of(index) - at_mono) * 1000)
    return errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--lead", type=float, default=1.0, help="seconds from send to `at`")
    parser.add_argument("--clicks", type=int, default=20, help="calibration clicks; 0: -8.2 ms")
    parser.add_argument("--config", default="", help="TOML appended to both daemons' config")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-rooms-") as tmpdir:
        rooms: list[Room] = []
        try:
            for name in ROOMS:
                rooms.append(Room(name, Path(tmpdir), args.config))
            for room in rooms:
                room.offset_ms, room.how = calibration_ms(room.card, room.recorder, args.clicks)
                room.wait_ready()
            results = [trial(rooms, n, args.lead) for n in range(args.trials)]
        finally:
            for room in rooms:
                room.stop()
    report(rooms, results, args)
    return 0


def report(rooms: list[Room], results: list[list[float | None]], args: argparse.Namespace) -> None:
    heard = [r for r in results if all(e is not None for e in r)]
    raw = {room.name: [float(r[i]) for r in heard] for i, room in enumerate(rooms)}  # type: ignore[arg-type]
    cal = {room.name: [e + room.offset_ms for e in raw[room.name]] for room in rooms}
    a, b = (room.name for room in rooms)
    rows = []
    for label, values in (
        *((f"{n} error against `at`, raw", raw[n]) for n in (a, b)),
        *((f"{n} error against `at`, calibrated", cal[n]) for n in (a, b)),
        ("skew A - B, raw", [x - y for x, y in zip(raw[a], raw[b], strict=True)]),
        ("skew A - B, calibrated", [x - y for x, y in zip(cal[a], cal[b], strict=True)]),
    ):
        magnitude = [abs(v) for v in values]
        rows.append([label, fmt(p50(magnitude)), fmt(p95(magnitude)), span(values)])
    print(f"{len(heard)}/{len(results)} trials heard in both rooms; lead {args.lead} s")
    print(f"load: {loadavg()}")
    for room in rooms:
        print(f"{room.name}: {room.how}")
    print(table(["ms (|value|)", "p50", "p95", "range (signed)"], rows))


if __name__ == "__main__":
    sys.exit(main())
