"""Shared helpers for tests that drive the daemon: a raw line client, and the daemon as a real
process whose readiness is its sd_notify READY=1 on a socket the test listens on."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import trio

from playspeak.config import AudioConfig, ChimeConfig, Config, ControlConfig, LocalServerConfig
from playspeak.daemon import Daemon

ENDINGS = ("finished", "cancelled", "failed")
Ident = str | Callable[[str], bool] | None  # an utterance id, or a test on ids


# What is heard is compared sample by sample: a deeper device buffer than the default "low"
# keeps a loaded 2-core machine from dropping out, and a pre-roll keeps the local server's
# paced, randomly sized chunks from running the device dry at the start of an utterance
# (either would insert silence and spoil the comparison; bench/ measures the defaults).
CONTENT_LATENCY = "0.1"
CONTENT_PREROLL_MS = 150.0


def device_underflows(daemon: Daemon) -> int:
    """How often PortAudio reported that the daemon's device ran dry (audio_compare.hearing)."""
    return int(daemon.player.stats["device_underflows"])


def sound_card_config(tmp_path: Path, **chime: object) -> Config:
    """The embedded local server (50 ms to first byte, 3x real time), the test sink's rate."""
    return Config(
        control=ControlConfig(socket=str(tmp_path / "playspeak.sock")),
        # one stream per stretch: these tests compare what is heard sample for sample, and the
        # move to the steady stream may shift a pause by a sample or so (tested on its own)
        audio=AudioConfig(
            samplerate=48000,
            latency=CONTENT_LATENCY,
            preroll_ms=CONTENT_PREROLL_MS,
            steady_latency=0.0,
        ),
        local_server=LocalServerConfig(
            embedded="server", first_byte_delay=0.05, realtime_factor=3.0
        ),
        chime=ChimeConfig(**chime),
    )


class LineClient:
    """A raw Unix-socket client: bytes out, JSON lines in."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.buffer = b""
        self.backlog: list[dict] = []  # events read while looking for a reply

    @classmethod
    async def open(cls, path: Path) -> LineClient:
        return cls(await trio.open_unix_socket(str(path)))

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def command(self, **fields: object) -> dict:
        """Send one JSON command and return its reply line (events before it are kept)."""
        await self.send(json.dumps(fields).encode() + b"\n")
        while (line := await self._line())["event"] not in ("ok", "error"):
            self.backlog.append(line)
        return line

    async def event(self) -> dict:
        """The next line, oldest first."""
        if self.backlog:
            return self.backlog.pop(0)
        return await self._line()

    async def _line(self) -> dict:
        while b"\n" not in self.buffer:
            data = await self.stream.receive_some(65536)
            assert data, "daemon closed the connection"
            self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    async def events_until_end(self, ids: set[str]) -> list[dict]:
        """Every line until each of `ids` has ended."""
        events, open_ids = [], set(ids)
        while open_ids:
            events.append(event := await self.event())
            if event["event"] in ENDINGS:
                open_ids.discard(event["id"])
        return events

    async def until(self, event: str, ident: Ident = None) -> list[dict]:
        """Every line up to and including the first `event` (of `ident` when given: an id, or
        a test on ids)."""
        matches = (lambda _: True) if ident is None else ident if callable(ident) else ident.__eq__
        lines = []
        while True:
            lines.append(line := await self.event())
            if line["event"] == event and matches(line.get("id", "")):
                return lines

    async def wait_for(self, event: str, ident: Ident = None) -> dict:
        """The first `event` (of `ident` when given), the lines before it read past."""
        return (await self.until(event, ident))[-1]


@dataclass
class Said:
    """One utterance's own events, oldest first, its ending last."""

    id: str
    events: list[dict]

    def __getitem__(self, name: str) -> dict:
        return next(e for e in self.events if e["event"] == name)

    @property
    def names(self) -> list[str]:
        return [e["event"] for e in self.events]

    @property
    def ending(self) -> dict:
        return self.events[-1]


async def say(socket_path: Path, text: str, **fields: object) -> Said:
    """Speak `text` on a connection of its own, until it ends; it must have been accepted."""
    client = await LineClient.open(socket_path)
    try:
        ident = await speak(client, text, **fields)
        events = await client.events_until_end({ident})
    finally:
        await client.stream.aclose()
    return Said(ident, [e for e in events if e.get("id") == ident])


async def speak(client: LineClient, text: str, **fields: object) -> str:
    """Send a speak command; its id once the daemon accepted it."""
    reply = await client.command(cmd="speak", text=text, **fields)
    assert reply["event"] == "ok", reply
    return reply["id"]


class DaemonProcess:
    def __init__(self, process: trio.Process, socket_path: Path, notify: trio.socket.SocketType):
        self.process = process
        self.socket_path = socket_path
        self.notify = notify

    async def next_notification(self, timeout: float = 20) -> str:
        with trio.fail_after(timeout):
            return (await self.notify.recv(4096)).decode()


@asynccontextmanager
async def daemon_process(
    tmp_path: Path,
    env: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
    stderr: Path | None = None,
    wrapper: tuple[str, ...] = (),
) -> AsyncIterator[DaemonProcess]:
    """`playspeak run` as a child process; yields once it sent READY=1. SIGTERM on exit. Its
    log goes to the file `stderr` when given. `wrapper` comes before the command (e.g. `ip
    netns exec NAME`, which execs it: the child is still the daemon)."""
    notify_path = tmp_path / f"notify-{os.urandom(4).hex()}"
    notify = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    await notify.bind(str(notify_path))
    socket_path = tmp_path / "playspeak.sock"
    child_env = {
        **os.environ,
        "PLAYSPEAK_SOCKET": str(socket_path),
        "NOTIFY_SOCKET": str(notify_path),
        **(env or {}),
    }
    for key in ("PLAYAI_API_KEY", "PLAYAI_USER_ID", "PLAYSPEAK_API_URL", "PLAYSPEAK_CONFIG"):
        if env is None or key not in env:
            child_env.pop(key, None)
    command = [*wrapper, sys.executable, "-m", "playspeak", "run", *args]
    log = stderr.open("ab") if stderr is not None else None
    async with trio.open_nursery() as nursery:
        process = await nursery.start(
            lambda task_status: trio.run_process(
                command, env=child_env, check=False, stderr=log, task_status=task_status
            )
        )
        daemon = DaemonProcess(process, socket_path, notify)
        try:
            while "READY=1" not in await daemon.next_notification():
                pass
            yield daemon
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
            with trio.move_on_after(10) as scope:
                await process.wait()
            if scope.cancelled_caught:
                process.kill()
            notify.close()
            if log is not None:
                log.close()
