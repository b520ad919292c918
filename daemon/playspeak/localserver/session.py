"""One websocket connection: read commands in order, answer each with start, audio, end."""

from __future__ import annotations

import json
import logging
import math
import random
from dataclasses import dataclass

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from playspeak.localserver.audio import AudioEngine
from playspeak.localserver.commands import Command, CommandError, parse_command
from playspeak.localserver.encode import Encoded
from playspeak.localserver.models import Model
from playspeak.localserver.settings import Faults, LocalServerSettings, Stats

log = logging.getLogger("playspeak.localserver")

QUEUE_SIZE = 16  # commands read ahead of the reply being sent; then the reader waits
CLOSE_TIMEOUT = 5.0


@dataclass
class Shared:
    """What every connection of one server shares."""

    settings: LocalServerSettings
    faults: Faults
    stats: Stats
    audio: AudioEngine


class Session:
    """Serves one accepted websocket until the client leaves, its lifetime ends or a fault hits."""

    def __init__(
        self, ws: WebSocketConnection, transport: trio.abc.Stream, model: Model, shared: Shared
    ) -> None:
        self._ws = ws
        self._transport = transport
        self._model = model
        self._shared = shared
        self._number = shared.stats.connections
        # One seeded generator per connection, so chunking does not depend on other clients.
        self._rng = random.Random(f"{shared.settings.seed}:{self._number}")
        self._scope = trio.CancelScope()
        self._aborted = False
        self._received = 0
        self._audio_sent = 0
        self._unanswered = 0  # commands read and not yet answered
        # Cancelled when the connection has had nothing to do for settings.idle_timeout.
        self._idle = trio.CancelScope()

    async def run(self) -> None:
        """Serve the connection; returns when it is over (closed or aborted)."""
        settings = self._shared.settings
        send, recv = trio.open_memory_channel[Command | CommandError](QUEUE_SIZE)
        self._set_idle_deadline()
        with trio.move_on_after(settings.connection_lifetime) as lifetime, self._scope, self._idle:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read, send)
                nursery.start_soon(self._produce, recv)
        if self._aborted:
            return
        reason = None
        if lifetime.cancelled_caught:
            reason = "connection lifetime exceeded"
        elif self._idle.cancelled_caught:
            reason = "idle timeout"
            self._shared.stats.idle_closes += 1
        if reason:
            log.info("closing websocket connection %d: %s", self._number, reason)
        with trio.move_on_after(CLOSE_TIMEOUT):
            await self._ws.aclose(1000, reason)

    async def _read(self, send: trio.MemorySendChannel[Command | CommandError]) -> None:
        faults, stats = self._shared.faults, self._shared.stats
        async with send:
            while True:
                try:
                    frame = await self._ws.get_message()
                except ConnectionClosed:
                    self._scope.cancel()  # nothing can be sent any more
                    return
                self._received += 1
                self._unanswered += 1
                self._idle.deadline = math.inf
                stats.requests += 1
                limit = faults.drop_after_requests
                if limit is not None and self._received >= limit:
                    faults.drop_after_requests = None
                    await self._abort(f"drop_after_requests={limit}")
                    return
                try:
                    item: Command | CommandError = parse_command(frame, self._model)
                except CommandError as e:
                    item = e
                await send.send(item)

    async def _produce(self, recv: trio.MemoryReceiveChannel[Command | CommandError]) -> None:
        try:
            async with recv:
                async for item in recv:
                    if isinstance(item, CommandError):
                        await self._send_error(item.message, item.request_id)
                    else:
                        await self._answer(item)
                    self._unanswered -= 1
                    self._set_idle_deadline()
        except ConnectionClosed:
            self._scope.cancel()

    def _set_idle_deadline(self) -> None:
        """Start the idle clock if nothing is asked of this connection now."""
        timeout = self._shared.settings.idle_timeout
        if timeout > 0 and self._unanswered == 0:
            self._idle.deadline = trio.current_time() + timeout

    async def _answer(self, command: Command) -> None:
        settings, faults = self._shared.settings, self._shared.faults
        started = trio.current_time()
        rid = command.request_id
        if faults.garbage_frames:
            await self._ws.send_message("this frame is not JSON (injected)")
            await self._send_json({"type": "metrics", "request_id": rid, "injected": True})
        if faults.error_on_text is not None and faults.error_on_text in command.text:
            await self._send_error("synthesis failed (injected)", rid)
            return
        try:
            audio = await self._shared.audio.render(
                command.text,
                command.voice,
                command.speed,
                command.sample_rate,
                command.output_format,
            )
        except Exception:  # one failed synthesis is that request's error, not the server's
            log.exception("synthesis failed")
            await self._send_error("synthesis failed", rid)
            return
        await self._send_json({"type": "start", "request_id": rid})
        await trio.sleep_until(started + settings.first_byte_delay)
        await self._stream_audio(audio)
        await self._send_json({"type": "end", "request_id": rid})

    async def _stream_audio(self, audio: Encoded) -> None:
        settings = self._shared.settings
        first_byte = trio.current_time()
        corrupt_at = self._take_corruption(len(audio.data))
        size = max(len(audio.data), 1)
        for start, end in self._cuts(audio):
            if settings.realtime_factor > 0 and start > 0:
                position = end / size * audio.duration
                await trio.sleep_until(first_byte + position / settings.realtime_factor)
            chunk = audio.data[start:end]
            if corrupt_at is not None and end > corrupt_at:
                keep = max(corrupt_at - start, 0)
                chunk = chunk[:keep] + self._rng.randbytes(len(chunk) - keep)
            stall = self._shared.faults.stall_after_bytes
            if stall is not None and end > stall:
                head = max(stall - start, 0)
                if head:
                    await self._send_audio(chunk[:head])
                await self._stall(stall)
                chunk = chunk[head:]
            await self._send_audio(chunk)

    async def _stall(self, offset: int) -> None:
        faults = self._shared.faults
        faults.stall_after_bytes = None
        self._shared.stats.stalls += 1
        log.info("stalling a reply after byte %d (injected fault)", offset)
        await faults.wait_resumed()
        log.info("resuming the reply stalled after byte %d", offset)

    def _cuts(self, audio: Encoded) -> list[tuple[int, int]]:
        """Chunk boundaries: the header alone, then random sizes that ignore frame boundaries."""
        settings = self._shared.settings
        cuts = [(0, audio.header)] if audio.header else []
        position = audio.header
        while position < len(audio.data):
            end = min(
                position + self._rng.randint(settings.chunk_min, settings.chunk_max),
                len(audio.data),
            )
            cuts.append((position, end))
            position = end
        return cuts

    def _take_corruption(self, size: int) -> int | None:
        faults = self._shared.faults
        offset = faults.corrupt_after_bytes
        if offset is None or offset >= size:
            return None
        faults.corrupt_after_bytes = None
        log.info("corrupting a reply after byte %d (injected fault)", offset)
        return offset

    async def _send_audio(self, chunk: bytes) -> None:
        faults = self._shared.faults
        limit = faults.drop_after_bytes
        if limit is not None and self._audio_sent + len(chunk) >= limit:
            faults.drop_after_bytes = None
            head = chunk[: max(limit - self._audio_sent, 0)]
            if head:
                await self._ws.send_message(head)
                self._audio_sent += len(head)
            await self._abort(f"drop_after_bytes={limit}")
            return
        await self._ws.send_message(chunk)
        self._audio_sent += len(chunk)

    async def _send_json(self, message: dict[str, object]) -> None:
        await self._ws.send_message(json.dumps(message))

    async def _send_error(self, message: str, request_id: object) -> None:
        if self._shared.settings.error_frames == "typed":
            await self._send_json({"type": "error", "request_id": request_id, "message": message})
        else:
            await self._send_json({"error": message, "request_id": request_id})

    async def _abort(self, why: str) -> None:
        # Closing TCP without a close frame is what a crash or a cut network looks like.
        log.info("aborting websocket connection %d (injected fault: %s)", self._number, why)
        self._aborted = True
        self._scope.cancel()
        await trio.aclose_forcefully(self._transport)
        await trio.lowlevel.checkpoint()  # unwinds this task now: its scope is cancelled
