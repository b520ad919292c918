"""A local PlayAI-compatible TTS server: auth over HTTP, speech over websocket, for offline use."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from playspeak.localserver.server import LocalServer
from playspeak.localserver.settings import Faults, LocalServerSettings, Stats

__all__ = ["Faults", "LocalServer", "LocalServerSettings", "Stats", "open_local_server"]


@asynccontextmanager
async def open_local_server(
    settings: LocalServerSettings | None = None, **overrides: Any
) -> AsyncIterator[LocalServer]:
    """Start a LocalServer in its own nursery, yield it listening, stop it on exit."""
    server = LocalServer(dataclasses.replace(settings or LocalServerSettings(), **overrides))
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        try:
            yield server
        finally:
            nursery.cancel_scope.cancel()
