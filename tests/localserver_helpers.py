"""Real-client helpers for the local PlayAI server's tests: auth, commands, replies, decoding."""

from __future__ import annotations

import io
import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import av
import httpx
import trio_websocket

from playspeak.localserver import LocalServer

AUTH_PATH = "/api/v1/tts/websocket-auth"
GOOD_HEADERS = {"Authorization": "Bearer test-key", "X-User-Id": "test-user"}
LAME_DELAY = 1105  # samples of silence LAME puts before the audio; no Xing frame says so


@contextmanager
def serve_local(args: list[str], env: dict[str, str]) -> Iterator[str]:
    """`serve-local ARGS` in a child Python, yielding its base URL (from the line it logs as
    it listens); the block's end is its SIGINT, which it must exit 0 on."""
    code = f"import sys; from playspeak.localserver.cli import main; sys.exit(main({args!r}))"
    with subprocess.Popen(
        [sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            line = proc.stderr.readline() if proc.stderr else ""
            match = re.search(r"on (http://127\.0\.0\.1:\d+)", line)
            assert match, line
            yield match[1]
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()


async def auth(
    server: LocalServer, path: str = AUTH_PATH, headers: dict[str, str] | None = None
) -> httpx.Response:
    """POST to an auth path of the server with real httpx."""
    async with httpx.AsyncClient() as client:
        return await client.post(server.base_url + path, headers=headers or GOOD_HEADERS)


async def ws_url(server: LocalServer, model: str = "Play3.0-mini") -> str:
    """A fresh websocket URL for ``model``."""
    response = await auth(server)
    response.raise_for_status()
    return str(response.json()["webSocketUrls"][model])


@dataclass
class Reply:
    """Everything the server sent for one command, in order."""

    frames: list[str | bytes] = field(default_factory=list)

    @property
    def messages(self) -> list[dict[str, object]]:
        """The JSON text frames (a non-JSON text frame is skipped, as a client must)."""
        return [m for f in self.frames if isinstance(f, str) and (m := _json(f)) is not None]

    @property
    def chunks(self) -> list[bytes]:
        return [f for f in self.frames if isinstance(f, bytes)]

    @property
    def audio(self) -> bytes:
        return b"".join(self.chunks)

    @property
    def last(self) -> dict[str, object]:
        return self.messages[-1]


def _json(frame: str) -> dict[str, object] | None:
    try:
        message = json.loads(frame)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


async def read_reply(ws: trio_websocket.WebSocketConnection) -> Reply:
    """Frames up to and including the ``end`` frame (a failed request's too); skips nothing."""
    reply = Reply()
    while True:
        frame = await ws.get_message()
        reply.frames.append(frame)
        message = _json(frame) if isinstance(frame, str) else None
        if message is not None and message.get("type") == "end":
            return reply


async def speak(ws: trio_websocket.WebSocketConnection, **command: object) -> Reply:
    """Send one command (``text``/``voice`` defaulted) and read its whole reply."""
    await ws.send_message(json.dumps({"text": "Hi there.", "voice": "Angelo", **command}))
    return await read_reply(ws)


def decode(data: bytes, output_format: str, sample_rate: int) -> tuple[int, int]:
    """Decode with PyAV; returns (samples per channel, sample rate)."""
    formats = {"raw": "s16le", "mulaw": "mulaw"}
    options = {"sample_rate": str(sample_rate), "ch_layout": "mono"}
    if output_format in formats:
        container = av.open(io.BytesIO(data), format=formats[output_format], options=options)
    else:
        container = av.open(io.BytesIO(data))
    with container:
        frames = list(container.decode(audio=0))
    return sum(f.samples for f in frames), frames[0].rate


_MP3_BITRATES = {
    3: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    2: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MP3_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def id3_size(data: bytes) -> int:
    """Length of a leading ID3v2 tag (0 if none)."""
    if data[:3] != b"ID3":
        return 0
    size = 0
    for byte in data[6:10]:
        size = size << 7 | byte & 0x7F
    return 10 + size


def mp3_frame_offsets(data: bytes) -> list[int]:
    """Start offsets of the MPEG layer III frames after the ID3 tag, walked header by header."""
    offsets = []
    pos = id3_size(data)
    while pos + 4 <= len(data):
        header = int.from_bytes(data[pos : pos + 4], "big")
        assert header >> 21 == 0x7FF, f"no frame sync at {pos}"
        version = header >> 19 & 3
        bitrate = _MP3_BITRATES[3 if version == 3 else 2][header >> 12 & 0xF] * 1000
        rate = _MP3_RATES[version][header >> 10 & 3]
        padding = header >> 9 & 1
        offsets.append(pos)
        pos += (144 if version == 3 else 72) * bitrate // rate + padding
    assert pos == len(data), "the last frame is cut short"
    return offsets
