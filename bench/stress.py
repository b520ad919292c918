"""Stress: the real daemon, busy CPUs and a crowd of clients firing mixed commands; every
utterance must start at most once and end exactly once, and the daemon must not die.

    .venv/bin/python -m bench.stress [--seconds 60] [--burners 2] [--clients 6]

The daemon is a real `playspeak run` process with its shipped audio settings and the embedded
local server, playing into a private PulseAudio null sink (or the one named by the
environment, as in the test suite). The clients speak at every priority, cancel by id, stop,
skip, pause and resume, change the volume, leave in the middle of an utterance, and speak and
cancel over SSIP. A subscriber reads every event and checks the invariants (`Ledger`). After
the time is up the clients stop, the daemon is resumed and given time to finish what it holds,
and every utterance it accepted must have ended.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import trio

ENDINGS = ("finished", "cancelled", "failed")
PRIORITIES = ("important", "message", "text", "notification", "progress")
# mostly text, which interrupts itself, so that the queue stays short and many are heard
PRIORITY_WEIGHTS = (1, 2, 5, 1, 1)
TEXTS = [
    "Hello.",
    "The washing machine has finished.",
    "Front door open.",
    "This is a longer announcement, about the weather in the north, the wind, and the rain "
    "that is expected later this evening.",
    "Dinner is ready.",
    "The temperature in the living room is twenty one degrees.",
]
QUIET_SECONDS = 10.0  # after the clients stop: no event for this long with some not ended: stuck


@dataclass
class Ledger:
    """The invariants, read from a subscriber's events (no I/O): each utterance is queued
    before anything else, starts at most once, ends exactly once and hears nothing after its
    end, ends `finished` only after `started`; one utterance speaks at a time."""

    states: dict[str, str] = field(default_factory=dict)  # id -> queued, started, or an ending
    violations: list[str] = field(default_factory=list)
    ended: Counter[str] = field(default_factory=Counter)
    speaking: str | None = None
    events: int = 0
    status: dict | None = None  # the daemon's status, taken when something never ended
    history: dict[str, list[str]] = field(default_factory=dict)  # id -> its events
    failures: Counter[str] = field(default_factory=Counter)  # the reasons given

    def see(self, event: dict) -> None:
        kind, uid = event.get("event"), event.get("id")
        if uid is None or kind not in ("queued", "started", *ENDINGS):
            return
        self.events += 1
        self.history.setdefault(uid, []).append(kind)
        state = self.states.get(uid)
        if state in ENDINGS:
            self._violation(f"{uid}: {kind} after {state}")
        elif kind == "queued":
            if state is not None:
                self._violation(f"{uid}: queued again after {state}")
            self.states[uid] = "queued"
        elif state is None:
            self._violation(f"{uid}: {kind} before queued")
        elif kind == "started":
            if state == "started":
                self._violation(f"{uid}: started twice")
            if self.speaking is not None:
                self._violation(f"{uid}: started while {self.speaking} speaks")
            self.speaking = uid
            self.states[uid] = "started"
        else:
            if kind == "finished" and state != "started":
                self._violation(f"{uid}: finished without started")
            self.states[uid] = kind
            self.ended[kind] += 1
            if kind == "failed":
                self.failures[str(event.get("reason"))[:120]] += 1
            if self.speaking == uid:
                self.speaking = None

    def unended(self) -> list[str]:
        return [uid for uid, state in self.states.items() if state not in ENDINGS]

    def _violation(self, text: str) -> None:
        self.violations.append(text)


@dataclass
class Report:
    seconds: float
    burners: int
    commands: Counter[str]
    ledger: Ledger
    deaths: int
    lost: list[str]
    exit_code: int | None
    fatal: list[str]  # lines of the daemon's stderr that tell of a crash or a traceback

    @property
    def ok(self) -> bool:
        clean = not self.ledger.violations and not self.lost and not self.fatal
        return clean and self.deaths == 0 and self.exit_code == 0

    def lines(self) -> list[str]:
        ledger = self.ledger
        out = [
            f"{self.seconds:.0f} s with {self.burners} CPU burner(s): "
            f"{sum(self.commands.values())} commands ({_counts(self.commands)})",
            f"utterances {len(ledger.states)}: {_counts(ledger.ended)}; events {ledger.events}",
            f"daemon deaths {self.deaths}; exit status after SIGTERM {self.exit_code}",
            f"invariant violations {len(ledger.violations)}; never ended {len(self.lost)}; "
            f"crash lines {len(self.fatal)}",
        ]
        out += [f"  failed: {n} x {reason}" for reason, n in ledger.failures.most_common(10)]
        out += [f"  violation: {v}" for v in ledger.violations[:20]]
        out += [f"  never ended: {uid} {ledger.history.get(uid)}" for uid in self.lost[:20]]
        out += [f"  daemon: {line}" for line in self.fatal[:20]]
        if ledger.status is not None:
            out.append(f"  status then: {json.dumps(ledger.status)[:3000]}")
        out.append("PASS" if self.ok else "FAIL")
        return out


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counter.items())) or "none"


class Lines:
    """A Unix-socket line client; JSON replies and events go to `on_line`."""

    def __init__(self, stream: trio.SocketStream, on_line: Callable[[dict], None]) -> None:
        self.stream, self.on_line = stream, on_line

    async def send(self, obj: dict) -> None:
        await self.stream.send_all(json.dumps(obj).encode() + b"\n")

    async def read(self) -> None:
        """Until the daemon closes the connection (or it breaks)."""
        buffer = b""
        try:
            while data := await self.stream.receive_some(65536):
                buffer += data
                *lines, buffer = buffer.split(b"\n")
                for raw in lines:
                    self.on_line(json.loads(raw))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


class Crowd:
    """The clients: each a loop of random commands with short random pauses."""

    def __init__(self, socket: Path, ssip: Path, seed: int, commands: Counter[str]) -> None:
        self.socket, self.ssip = socket, ssip
        self.rng = random.Random(seed)
        self.commands = commands
        self.ids: list[str] = []  # accepted utterances, for cancel by id
        self.serial = 0

    def _reply(self, line: dict) -> None:
        if line.get("event") == "ok" and isinstance(line.get("id"), str):
            self.ids.append(line["id"])
            del self.ids[:-50]

    async def control_client(self, number: int) -> None:
        """Until cancelled, or the daemon goes away (counted by the caller)."""
        rng = random.Random(self.rng.random())
        try:
            client = Lines(await trio.open_unix_socket(str(self.socket)), self._reply)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client.read)
                while True:
                    await trio.sleep(rng.uniform(0.05, 0.8))
                    await self._one_command(client, rng, number)
        except* (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as group:
            kinds = sorted({repr(e)[:80] for e in group.exceptions})
            self.commands[f"client lost its connection ({', '.join(kinds)})"] += 1

    async def announcer(self) -> None:
        """An important announcement every second or so, each waited for: they are spoken
        whole unless a stop, skip or cancel by id hits them."""
        ended = trio.Event()

        def on_line(line: dict) -> None:
            self._reply(line)
            if line.get("event") in ENDINGS:
                ended.set()

        try:
            client = Lines(await trio.open_unix_socket(str(self.socket)), on_line)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client.read)
                while True:
                    ended = trio.Event()
                    text = self.rng.choice(TEXTS[:3])
                    await client.send({"cmd": "speak", "text": text, "priority": "important"})
                    self.commands["speak important, waited for"] += 1
                    await ended.wait()
                    await trio.sleep(self.rng.uniform(0.2, 1.5))
        except* (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            self.commands["announcer lost its connection"] += 1

    async def _one_command(self, client: Lines, rng: random.Random, number: int) -> None:
        roll = rng.random()
        if roll < 0.50:
            await client.send(self._speak(rng, number))
            self.commands["speak"] += 1
        elif roll < 0.58 and self.ids:
            await client.send({"cmd": "cancel", "id": rng.choice(self.ids)})
            self.commands["cancel"] += 1
        elif roll < 0.63:
            await client.send({"cmd": rng.choice(["stop", "skip"])})
            self.commands["stop/skip"] += 1
        elif roll < 0.70:
            await client.send({"cmd": "pause"})
            await trio.sleep(rng.uniform(0.05, 0.5))
            await client.send({"cmd": "resume"})
            self.commands["pause+resume"] += 1
        elif roll < 0.80:
            await client.send({"cmd": "volume", "level": rng.randint(30, 100)})
            self.commands["volume"] += 1
        elif roll < 0.85:
            await client.send({"cmd": "status"})
            self.commands["status"] += 1
        elif roll < 0.93:
            await self._leave_mid_utterance(rng, number)
        else:
            await self._ssip(rng)

    def _speak(self, rng: random.Random, number: int) -> dict:
        command: dict = {
            "cmd": "speak",
            "text": rng.choice(TEXTS),
            "priority": rng.choices(PRIORITIES, weights=PRIORITY_WEIGHTS)[0],
        }
        if rng.random() < 0.3:
            self.serial += 1
            command["id"] = f"c{number}-{self.serial}"
        if rng.random() < 0.1:
            command["chime"] = True
        return command

    async def _leave_mid_utterance(self, rng: random.Random, number: int) -> None:
        stream = await trio.open_unix_socket(str(self.socket))
        await stream.send_all(json.dumps(self._speak(rng, number)).encode() + b"\n")
        await trio.sleep(rng.uniform(0.0, 0.5))
        await stream.aclose()
        self.commands["leave"] += 1

    async def _ssip(self, rng: random.Random) -> None:
        """A Speech Dispatcher client: speak, sometimes cancel, quit."""
        stream = await trio.open_unix_socket(str(self.ssip))
        text = rng.choice(TEXTS)
        lines = ["SET SELF CLIENT_NAME stress:bench:main", "SET SELF PRIORITY TEXT", "SPEAK"]
        lines += [text, "."]
        if rng.random() < 0.5:
            lines.append("CANCEL SELF")
        lines.append("QUIT")
        for line in lines:
            await stream.send_all(line.encode() + b"\r\n")
            await trio.sleep(0.01)
        with trio.move_on_after(2):
            while await stream.receive_some(65536):
                pass
        await stream.aclose()
        self.commands["ssip"] += 1


def daemon_config(tmp: Path) -> Path:
    path = tmp / "playspeak.toml"
    path.write_text(
        "[speech]\nmax_queue = 200\n"
        '[log]\nlevel = "warning"\n'
        '[local_server]\nembedded = "server"\nfirst_byte_delay = 0.05\nrealtime_factor = 3.0\n'
    )
    return path


def burner() -> subprocess.Popen[bytes]:
    """A process that keeps one core busy, as batch work at nice 0 even when we were raised (a
    test worker runs at audio.nice): inheriting that, it competed with every player on the
    machine as an equal."""
    nice_0 = functools.partial(os.setpriority, os.PRIO_PROCESS, 0, 0)
    return subprocess.Popen([sys.executable, "-c", "while 1: pass"], preexec_fn=nice_0)


async def stress(
    seconds: float, burners: int, clients: int, seed: int = 1, *, quiet: bool = False
) -> Report:
    """Run the daemon under the crowd for `seconds`; the sound card is whatever PulseAudio the
    environment points at (the caller starts one)."""
    commands: Counter[str] = Counter()
    ledger = Ledger()
    deaths = 0
    with tempfile.TemporaryDirectory(prefix="playspeak-stress-") as tmpdir:
        tmp = Path(tmpdir)
        socket, ssip, log = tmp / "control.sock", tmp / "ssip.sock", tmp / "daemon.log"
        env = {
            **os.environ,
            "PLAYSPEAK_SOCKET": str(socket),
            "PLAYSPEAK_SSIP_SOCKET": str(ssip),
            "PLAYSPEAK_CONFIG": str(daemon_config(tmp)),
        }
        for key in ("PLAYAI_API_KEY", "PLAYAI_USER_ID", "PLAYSPEAK_API_URL"):
            env.pop(key, None)  # the embedded local server
        command = [sys.executable, "-m", "playspeak", "run"]
        burning = [burner() for _ in range(burners)]
        try:
            with log.open("wb") as stderr:
                daemon = subprocess.Popen(command, env=env, stderr=stderr)
                try:
                    await _wait_for_sockets(daemon, socket, ssip)
                    subscriber = Lines(await trio.open_unix_socket(str(socket)), ledger.see)
                    await subscriber.send({"cmd": "subscribe"})
                    crowd = Crowd(socket, ssip, seed, commands)
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(subscriber.read)
                        with trio.move_on_after(seconds):
                            async with trio.open_nursery() as clients_nursery:
                                clients_nursery.start_soon(crowd.announcer)
                                for n in range(clients):
                                    clients_nursery.start_soon(crowd.control_client, n)
                                await _until_dead(daemon)
                                deaths += 1  # (the clients go with it)
                                clients_nursery.cancel_scope.cancel()
                        if daemon.poll() is None:
                            await _quiesce(socket, ledger)
                        nursery.cancel_scope.cancel()
                finally:
                    if daemon.poll() is None:
                        daemon.send_signal(signal.SIGTERM)
                    exit_code = await trio.to_thread.run_sync(_wait, daemon)
        finally:
            for process in burning:
                process.kill()
                process.wait()
        text = log.read_text(errors="replace")
        if os.environ.get("STRESS_LOG"):
            Path(os.environ["STRESS_LOG"]).write_text(text)
    fatal = [
        line
        for line in text.splitlines()
        if "Fatal Python error" in line or "Traceback" in line or "Segmentation" in line
    ]
    if exit_code is not None and exit_code < 0:
        deaths += 1
    report = Report(seconds, burners, commands, ledger, deaths, ledger.unended(), exit_code, fatal)
    if not quiet:
        print("\n".join(report.lines()))
    return report


async def _wait_for_sockets(daemon: subprocess.Popen[bytes], *sockets: Path) -> None:
    with trio.fail_after(30):
        for socket in sockets:
            while True:
                if daemon.poll() is not None:
                    raise RuntimeError(f"the daemon exited at start-up ({daemon.returncode})")
                try:
                    stream = await trio.open_unix_socket(str(socket))
                except OSError:
                    await trio.sleep(0.05)
                    continue
                await stream.aclose()
                break


async def _until_dead(daemon: subprocess.Popen[bytes]) -> None:
    while daemon.poll() is None:
        await trio.sleep(0.2)


async def _quiesce(socket: Path, ledger: Ledger) -> None:
    """Resume (a client may have stopped between its pause and resume), cancel everything
    still waiting, and wait until every accepted utterance has ended: until no event has come
    for QUIET_SECONDS (stuck) with some not ended, then take the daemon's status."""
    replies: list[dict] = []
    client = Lines(await trio.open_unix_socket(str(socket)), replies.append)
    await client.send({"cmd": "resume"})
    await client.send({"cmd": "cancel", "scope": "all"})
    seen, since = -1, trio.current_time()
    while ledger.unended() and trio.current_time() - since < QUIET_SECONDS:
        if seen != ledger.events:
            seen, since = ledger.events, trio.current_time()
        await trio.sleep(0.1)
    if ledger.unended():  # what the daemon says it still holds
        await client.send({"cmd": "status"})
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.read)
            with trio.move_on_after(5):
                while not any(r.get("cmd") == "status" for r in replies):
                    await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
        ledger.status = next((r for r in replies if r.get("cmd") == "status"), None)
    await client.stream.aclose()


def _wait(daemon: subprocess.Popen[bytes]) -> int | None:
    try:
        return daemon.wait(timeout=30)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait()
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--burners", type=int, default=2)
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    from bench.soundcard import PulseNullSink

    with PulseNullSink() as card:
        os.environ.update(card.env)
        report = trio.run(stress, args.seconds, args.burners, args.clients, args.seed)
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
