"""A minimal PlayAI websocket TTS client (httpx + trio-websocket), as the PlayAI docs use it:
authenticate once, keep one websocket, send a command, read `start`, audio frames, `end`.

Shared by the benchmark's feeders (mpv, ffplay) and the buffer-then-play client.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
from trio_websocket import WebSocketConnection, open_websocket_url

AUTH_PATH = "/api/v1/tts/websocket-auth"


@dataclass(frozen=True)
class Endpoint:
    """Where the service is and who we are."""

    base_url: str
    api_key: str = field(repr=False)
    user_id: str = field(repr=False)
    model: str = "Play3.0-mini"


class TtsError(RuntimeError):
    """The service answered a request with an error frame."""


class TtsConnection:
    """One open websocket; requests are answered in order, one at a time here."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self._ws = ws
        self._ids = itertools.count(1)

    async def send(self, text: str, voice: str, output_format: str = "mp3") -> str:
        """Send one TTS command; returns its request id (read the audio with `audio`)."""
        request_id = f"bench-{next(self._ids)}"
        command = {
            "text": text,
            "voice": voice,
            "output_format": output_format,
            "request_id": request_id,
        }
        await self._ws.send_message(json.dumps(command))
        return request_id

    async def audio(self, request_id: str) -> AsyncIterator[bytes]:
        """The audio frames of `request_id` as they arrive, until its `end` frame."""
        while True:
            message = await self._ws.get_message()
            if isinstance(message, bytes):
                yield message
                continue
            frame = json.loads(message)
            if "error" in frame:
                raise TtsError(str(frame["error"]))
            if frame.get("type") == "end" and frame.get("request_id") in (None, request_id):
                return


@asynccontextmanager
async def open_tts(endpoint: Endpoint) -> AsyncIterator[TtsConnection]:
    """Authenticate (POST websocket-auth) and open the model's websocket."""
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.post(
            endpoint.base_url.rstrip("/") + AUTH_PATH,
            headers={
                "Authorization": f"Bearer {endpoint.api_key}",
                "X-User-Id": endpoint.user_id,
            },
        )
        response.raise_for_status()
        url = response.json()["webSocketUrls"][endpoint.model]
    async with open_websocket_url(url, max_message_size=2**22) as ws:
        yield TtsConnection(ws)
