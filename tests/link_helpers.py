"""A running PlayAI Link to the real local server, for the link's tests (test_playai_link.py,
test_service_economy.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import trio

from playspeak.localserver import LocalServer, LocalServerSettings, open_local_server
from playspeak.playai.link import Link, LinkSettings, Reply

VOICE = "s3://voice-cloning-zero-shot/test/manifest.json"


@asynccontextmanager
async def served_link(
    server: LocalServerSettings, key: str, user: str, **link_settings: Any
) -> AsyncIterator[tuple[LocalServer, Link]]:
    """A local server with `server` settings and a running Link to it, authenticating with
    `key` and `user`; both stop on exit."""
    async with (
        open_local_server(server) as local,
        httpx.AsyncClient() as http,
        trio.open_nursery() as nursery,
    ):
        link = Link(LinkSettings(local.base_url, key, user, **link_settings), http)
        await nursery.start(link.run)
        yield local, link
        nursery.cancel_scope.cancel()


async def collect(reply: Reply) -> bytes:
    """All of a reply's audio."""
    data = bytearray()
    while (chunk := await reply.receive()) is not None:
        data += chunk
    return bytes(data)


def command(text: str) -> dict[str, Any]:
    return {"text": text, "voice": VOICE, "output_format": "mp3"}
