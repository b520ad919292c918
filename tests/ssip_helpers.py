"""A raw SSIP client for tests: commands out, replies and 7xx events in, read apart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from playspeak.config import AudioConfig, Config, ControlConfig, LocalServerConfig, SsipConfig

from audio_compare import RATE


def ssip_config(tmp_path: Path, **sections: Any) -> Config:
    """A daemon with its SSIP door beside the control socket (speechd.sock), the embedded
    local server a little slower than real time's third, and any other sections given."""
    return Config(
        control=ControlConfig(socket=str(tmp_path / "playspeak.sock")),
        audio=AudioConfig(samplerate=RATE),
        local_server=LocalServerConfig(
            embedded="server", first_byte_delay=0.05, realtime_factor=3.0
        ),
        ssip=SsipConfig(socket=str(tmp_path / "speechd.sock")),
        **sections,
    )


class SsipClient:
    """One connection to the daemon's SSIP socket. `command` returns a command's reply lines;
    7xx events read on the way are kept for `event`."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""
        self.events: list[list[str]] = []
        self.reads: list[bytes] = []  # every receive_some, as it came (one write or more)

    @classmethod
    async def open(cls, path: Path, name: str = "test") -> SsipClient:
        client = cls(await trio.open_unix_socket(str(path)))
        assert (await client.command(f"SET SELF CLIENT_NAME user:{name}:main"))[-1][:3] == "208"
        return client

    async def command(self, line: str) -> list[str]:
        await self.stream.send_all(line.encode() + b"\r\n")
        return await self._reply()

    async def speak(self, text: str) -> int:
        """SPEAK a text; its message id."""
        reply = await self.try_speak(text)
        assert reply[-1].startswith("225"), reply
        return int(reply[0][4:])

    async def try_speak(self, text: str) -> list[str]:
        """SPEAK a text; the reply to its text (225, or why it was refused)."""
        assert (await self.command("SPEAK"))[-1].startswith("230")
        body = "\r\n".join(".." + x if x.startswith(".") else x for x in text.split("\n"))
        await self.stream.send_all(body.encode() + b"\r\n.\r\n")
        return await self._reply()

    async def event(self) -> list[str]:
        """The next 7xx event's lines (code-msgid, code-clientid, code TEXT)."""
        if self.events:
            return self.events.pop(0)
        while True:
            lines = await self._message()
            if lines[0].startswith("7"):
                return lines

    async def aclose(self) -> None:
        await self.stream.aclose()

    async def _reply(self) -> list[str]:
        while True:
            lines = await self._message()
            if not lines[0].startswith("7"):
                return lines
            self.events.append(lines)

    async def _message(self) -> list[str]:
        """Lines up to the one with a space after its code (the last of a reply or event)."""
        lines: list[str] = []
        while True:
            while b"\r\n" not in self.buffer:
                data = await self.stream.receive_some(65536)
                assert data, "daemon closed the connection"
                self.reads.append(data)
                self.buffer += data
            raw, self.buffer = self.buffer.split(b"\r\n", 1)
            lines.append(line := raw.decode())
            if line[3:4] != "-":
                return lines
