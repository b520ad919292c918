"""The four contenders, each a process the benchmark can measure, behind one interface:
`async with running()`, then `say(texts)` (plays them back to back, returns once all have
played), `peak_rss_mib()`, `extra()`.

- playspeak: the daemon as a child (`python -m playspeak run`), text sent on its socket.
- buffer-then-play: bench.buffered_client as a child (collect to `end`, decode, play).
- mpv / ffplay: a new child per utterance reading MP3 on stdin; our feeder writes each
  websocket chunk to its stdin as it arrives (as the ElevenLabs SDK streams into mpv).

Every child is stopped by its pid, bounded in time. Times are time.monotonic() (one clock
for every process on the machine), CPU from /proc or wait4.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import trio

from .material import VOICE
from .playai_client import Endpoint, TtsConnection, open_tts
from .procs import cpu_seconds, peak_of, peak_rss_mib, reap, spawn, terminate
from .soundcard import RATE

REPO = Path(__file__).resolve().parent.parent
READY_TIMEOUT = 30.0
MPV = ["mpv", "--no-cache", "--no-terminal", "--", "fd://0"]
FFPLAY = ["ffplay", "-nodisp", "-autoexit", "-nostats", "-i", "pipe:0"]


@dataclass
class Played:
    """One say(): when each request was made, and the CPU the player used meanwhile."""

    t0: list[float]
    cpu: float


class Contender(Protocol):
    name: str

    def running(self) -> AbstractAsyncContextManager[None]:
        """Start it (ready to speak), and stop it by its pid on leaving (bounded)."""
        ...

    async def say(self, texts: Sequence[str], *, timeout: float, settle: float = 0.0) -> Played:
        """Play `texts` back to back; return once all were heard. `settle`: seconds a player
        started per utterance gets between its start and the request (others ignore it)."""
        ...

    def peak_rss_mib(self) -> float: ...
    async def extra(self) -> dict[str, Any]: ...


class _Child:
    """running() for contenders with start() and stop() (a long-lived child process)."""

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        try:
            await self.start()
            yield
        finally:
            with trio.CancelScope(shield=True):
                await self.stop()


class LineReader:
    """Lines from a trio receive stream."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buffer = bytearray()

    async def line(self) -> bytes:
        while (end := self._buffer.find(b"\n")) < 0:
            data = await self._stream.receive_some(65536)
            if not data:
                raise EOFError("the other side closed")
            self._buffer += data
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        return line


class Playspeak(_Child):
    """The daemon as a child process, using the benchmark's local server; ready by sd_notify."""

    name = "playspeak"

    def __init__(
        self, endpoint: Endpoint, env: dict[str, str], settings: Sequence[str] = ()
    ) -> None:
        self._endpoint = endpoint
        self._env = env
        self._settings = daemon_settings(settings)
        self._dir = Path(tempfile.mkdtemp(prefix="playspeak-bench-"))
        self._socket = self._dir / "control.sock"
        self._process: trio.Process | None = None
        self._ids = 0

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    async def start(self) -> None:
        config = self._dir / "playspeak.toml"
        # Every utterance from the service: the phrase cache would answer repeats from disk.
        tables = {
            "audio": {"samplerate": RATE},
            "log": {"level": "warning"},
            "cache": {"enabled": False},
        }
        for key, value in self._settings.items():
            table, _, name = key.partition(".")
            tables.setdefault(table, {})[name] = value
        config.write_text(
            "".join(
                f"[{table}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())
                for table, values in tables.items()
            )
        )
        notify = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        await notify.bind(str(self._dir / "notify"))
        env = {
            **self._env,
            "PLAYSPEAK_SOCKET": str(self._socket),
            "PLAYSPEAK_API_URL": self._endpoint.base_url,
            "PLAYAI_API_KEY": self._endpoint.api_key,
            "PLAYAI_USER_ID": self._endpoint.user_id,
            "NOTIFY_SOCKET": str(self._dir / "notify"),
        }
        log = (self._dir / "daemon.log").open("wb")
        self._process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "playspeak", "run", "--config", str(config)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        log.close()
        with notify, trio.move_on_after(READY_TIMEOUT):
            while b"READY=1" not in await notify.recv(4096):
                pass
            return
        raise RuntimeError(f"playspeak not READY in {READY_TIMEOUT} s:\n{self.log_tail()}")

    def log_tail(self) -> str:
        """The end of the daemon's stderr, for error messages."""
        path = self._dir / "daemon.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    async def say(self, texts: Sequence[str], *, timeout: float, settle: float = 0.0) -> Played:
        ids = [self._next_id() for _ in texts]
        lines = "".join(
            json.dumps({"cmd": "speak", "text": t, "id": i}) + "\n"
            for t, i in zip(texts, ids, strict=True)
        )
        with trio.fail_after(timeout):
            stream = await trio.open_unix_socket(str(self._socket))
            async with stream:
                reader = LineReader(stream)
                cpu = cpu_seconds(self.pid)
                t0 = time.monotonic()
                await stream.send_all(lines.encode())
                pending = set(ids)
                while pending:
                    try:
                        line = await reader.line()
                    except EOFError:
                        tail = self.log_tail()
                        raise RuntimeError(f"playspeak closed the socket:\n{tail}") from None
                    event = json.loads(line)
                    if event.get("event") in ("failed", "cancelled", "error"):
                        raise RuntimeError(f"playspeak: {event}")
                    if event.get("event") == "finished":
                        pending.discard(event["id"])
                cpu = cpu_seconds(self.pid) - cpu
        return Played([t0] * len(texts), cpu)

    def peak_rss_mib(self) -> float:
        return peak_rss_mib(self.pid)

    async def extra(self) -> dict[str, Any]:
        """The daemon's device counters (underruns) from its `status` command."""
        with trio.fail_after(10):
            stream = await trio.open_unix_socket(str(self._socket))
            async with stream:
                await stream.send_all(b'{"cmd":"status"}\n')
                reply = json.loads(await LineReader(stream).line())
        return reply.get("status", {}).get("device", {})

    async def stop(self) -> None:
        if self._process is not None:
            await trio.to_thread.run_sync(terminate, self._process.pid)
            with trio.move_on_after(5):
                await self._process.wait()
            self._process = None
        shutil.rmtree(self._dir, ignore_errors=True)

    def _next_id(self) -> str:
        self._ids += 1
        return f"bench-{self._ids}"


def daemon_settings(settings: Sequence[str]) -> dict[str, Any]:
    """`table.key=value` strings (value in TOML: 0.04, true, "low"; else taken as text)."""
    parsed: dict[str, Any] = {}
    for setting in settings:
        key, sep, text = setting.partition("=")
        if not sep or "." not in key:
            raise ValueError(f"expected table.key=value, not {setting!r}")
        try:
            parsed[key.strip()] = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            parsed[key.strip()] = text
    return parsed


class BufferThenPlay(_Child):
    """bench.buffered_client as one long-lived child: one line of text in, `done` out."""

    name = "buffer-then-play"

    def __init__(self, endpoint: Endpoint, env: dict[str, str]) -> None:
        self._env = {
            **env,
            "BENCH_TTS_URL": endpoint.base_url,
            "PLAYAI_API_KEY": endpoint.api_key,
            "PLAYAI_USER_ID": endpoint.user_id,
            "BENCH_VOICE": VOICE,
        }
        self._process: trio.Process | None = None
        self._reader: LineReader | None = None

    async def start(self) -> None:
        self._process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "bench.buffered_client"],
            env=self._env,
            cwd=str(REPO),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self._process.stdout is not None
        self._reader = LineReader(self._process.stdout)
        with trio.fail_after(READY_TIMEOUT):
            if await self._reader.line() != b"ready":
                raise RuntimeError("buffered_client did not say ready")

    async def say(self, texts: Sequence[str], *, timeout: float, settle: float = 0.0) -> Played:
        assert self._process is not None and self._process.stdin is not None
        assert self._reader is not None
        with trio.fail_after(timeout):
            cpu = cpu_seconds(self._process.pid)
            t0 = time.monotonic()
            await self._process.stdin.send_all("".join(t + "\n" for t in texts).encode())
            for _ in texts:
                if await self._reader.line() != b"done":
                    raise RuntimeError("buffered_client: unexpected output")
            cpu = cpu_seconds(self._process.pid) - cpu
        return Played([t0] + [float("nan")] * (len(texts) - 1), cpu)

    def peak_rss_mib(self) -> float:
        assert self._process is not None
        return peak_rss_mib(self._process.pid)

    async def extra(self) -> dict[str, Any]:
        return {}

    async def stop(self) -> None:
        if self._process is None:
            return
        if self._process.stdin is not None:
            await self._process.stdin.aclose()  # EOF: it exits
        with trio.move_on_after(5):
            await self._process.wait()
        if self._process.returncode is None:
            await trio.to_thread.run_sync(terminate, self._process.pid)
            with trio.move_on_after(5):
                await self._process.wait()
        self._process = None


class PipePlayer:
    """A player reading MP3 from stdin, started per utterance; chunks are written to it as they
    arrive on the websocket, and its stdin is closed at `end`. Utterances one after the other:
    the next player starts once the previous one exited."""

    def __init__(self, name: str, command: list[str], endpoint: Endpoint, env: dict[str, str]):
        self.name = name
        self._command = command
        self._endpoint = endpoint
        self._env = env
        self._tts: TtsConnection | None = None
        self._peak = 0.0

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Keep one websocket to the service open (the feeder's) while it runs."""
        async with open_tts(self._endpoint) as tts:
            self._tts = tts
            try:
                yield
            finally:
                self._tts = None

    async def say(self, texts: Sequence[str], *, timeout: float, settle: float = 0.0) -> Played:
        t0s, cpu = [], 0.0
        with trio.fail_after(timeout):
            for text in texts:
                t0, used = await self._one(text, timeout, settle)
                t0s.append(t0)
                cpu += used
        return Played(t0s, cpu)

    async def _one(self, text: str, timeout: float, settle: float) -> tuple[float, float]:
        assert self._tts is not None
        process = spawn(self._command, self._env, stdin=True)
        try:
            assert process.stdin is not None
            stdin = trio.lowlevel.FdStream(os.dup(process.stdin.fileno()))
            process.stdin.close()
            await trio.sleep(settle)
            t0 = time.monotonic()
            request_id = await self._tts.send(text, VOICE)
            async with stdin:  # closing it is the player's end of input
                alive = True
                async for chunk in self._tts.audio(request_id):
                    if alive:
                        try:
                            await stdin.send_all(chunk)
                        except (trio.BrokenResourceError, trio.ClosedResourceError):
                            alive = False  # it exited early; keep reading to `end`
                peak = peak_of(process)  # as late as can be: its VmHWM only grows
        except BaseException:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(terminate, process.pid)
                await reap(process, 5)
            raise
        usage = await reap(process, timeout, peak)
        self._peak = max(self._peak, usage.peak_rss_mib)
        if usage.returncode != 0:
            raise RuntimeError(f"{self.name} exited with {usage.returncode}")
        return t0, usage.cpu

    def peak_rss_mib(self) -> float:
        return self._peak

    async def extra(self) -> dict[str, Any]:
        return {}
