"""One websocket connection: read commands in order, answer each with start, audio, end."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
from dataclasses import dataclass

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from playspeak.localserver.audio import AudioEngine, Piece, Rendering
from playspeak.localserver.chunker import Chunker, Cut
from playspeak.localserver.commands import Command, parse_command
from playspeak.localserver.models import Model
from playspeak.localserver.settings import Faults, LocalServerSettings, Stats
from playspeak.playai.wire import CommandRejected, End, ErrorFrame, Start, encode_frame

log = logging.getLogger("playspeak.localserver")

QUEUE_SIZE = 16  # commands read ahead of the reply being sent; then the reader waits
CLOSE_TIMEOUT = 5.0
# At its lifetime a connection reads no more commands but answers those it has read (the
# reply in flight is not cut: pyht would return it truncated, silently); this long at most.
LIFETIME_GRACE = 60.0


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
        self,
        ws: WebSocketConnection,
        transport: trio.abc.Stream,
        model: Model,
        shared: Shared,
        slots: trio.Semaphore | None = None,
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
        # Its client's commands in flight (ClientBounds.requests): the reader takes one slot
        # per command before queueing it (waiting stops the reading), the producer gives it
        # back once answered; those still held when the session ends are given back then.
        self._slots = slots
        self._held = 0
        self._expires = trio.current_time() + shared.settings.connection_lifetime
        self._expired = False  # the lifetime is over: the reader stopped
        # Cancelled when the connection has had nothing to do for settings.idle_timeout.
        self._idle = trio.CancelScope()

    async def run(self) -> None:
        """Serve the connection; returns when it is over (closed or aborted)."""
        send, recv = trio.open_memory_channel[Command | CommandRejected](QUEUE_SIZE)
        self._set_idle_deadline()
        try:
            with trio.move_on_at(self._expires + LIFETIME_GRACE), self._scope, self._idle:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._read, send)
                    nursery.start_soon(self._produce, recv)
        finally:
            for _ in range(self._held):
                assert self._slots is not None
                self._slots.release()
            self._held = 0
        if self._aborted:
            return
        reason = None
        if self._expired or trio.current_time() >= self._expires:
            reason = "connection lifetime exceeded"
        elif self._idle.cancelled_caught:
            reason = "idle timeout"
            self._shared.stats.idle_closes += 1
        if reason:
            log.info("closing websocket connection %d: %s", self._number, reason)
        with trio.move_on_after(CLOSE_TIMEOUT):
            await self._ws.aclose(1000, reason)

    async def _read(self, send: trio.MemorySendChannel[Command | CommandRejected]) -> None:
        faults, stats = self._shared.faults, self._shared.stats
        async with send:
            while True:
                try:
                    with trio.move_on_at(self._expires) as lifetime:
                        frame = await self._ws.get_message()
                except ConnectionClosed:
                    self._scope.cancel()  # nothing can be sent any more
                    return
                if lifetime.cancelled_caught:
                    self._expired = True  # what was read is answered, then the close
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
                if self._slots is not None:
                    await self._slots.acquire()
                    self._held += 1
                try:
                    item: Command | CommandRejected = parse_command(frame, self._model)
                except CommandRejected as e:
                    item = e
                await send.send(item)

    async def _produce(self, recv: trio.MemoryReceiveChannel[Command | CommandRejected]) -> None:
        try:
            async with recv:
                async for item in recv:
                    if isinstance(item, CommandRejected):
                        await self._fail(item.message, item.request_id, status=400)
                    else:
                        await self._answer(item)
                    self._unanswered -= 1
                    if self._slots is not None:
                        self._slots.release()
                        self._held -= 1
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
        self._shared.stats.formats[command.output_format] += 1
        started = trio.current_time()
        rid = end_rid = command.request_id
        if (wrong := faults.misnumber_reply) is not None:
            faults.misnumber_reply = None
            log.info("answering request %r with %s ids (injected fault)", rid, wrong)
            rid = {"unknown": "never-asked", "null": None, "null-end": rid}[wrong]
            end_rid = None if wrong != "unknown" else rid
        if faults.garbage_frames:
            await self._ws.send_message("this frame is not JSON (injected)")
            await self._ws.send_message(
                json.dumps({"type": "metrics", "request_id": rid, "injected": True})
            )
        if faults.error_on_text is not None and faults.error_on_text in command.text:
            await self._fail("synthesis failed (injected)", rid)
            return
        if faults.endless_on_text is not None and faults.endless_on_text in command.text:
            await self._send_endless(command, rid)
            return
        send, recv = trio.open_memory_channel[Piece | None](1)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._synthesize, command, send)
            async with recv:
                first = await recv.receive()
                if first is None:
                    await self._fail("synthesis failed", rid)
                    return
                await self._send(Start(rid))
                await trio.sleep_until(started + settings.first_byte_delay)
                complete = await self._stream_audio(first, recv)
        if complete:
            await self._send(End(end_rid))
        else:
            await self._fail("synthesis failed", end_rid, started=True)

    async def _send_endless(self, command: Command, rid: object) -> None:
        """A reply that never ends (injected): its audio again and again, as fast as the
        client reads."""
        encoded = await self._shared.audio.render(_rendering(command))
        audio, step = encoded.data, self._shared.settings.chunk_max
        await self._send(Start(rid))
        while True:
            for offset in range(0, len(audio), step):
                await self._send_audio(audio[offset : offset + step])

    async def _synthesize(
        self, command: Command, send: trio.MemorySendChannel[Piece | None]
    ) -> None:
        """Send the reply's audio pieces as synthesis makes them; None if synthesis fails."""
        async with send:
            try:
                await self._shared.audio.stream(_rendering(command), send.send)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return  # the reply is over (its client left): nobody wants the rest
            except Exception:  # one failed synthesis is that request's error, not the server's
                log.exception("synthesis failed")
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await send.send(None)

    async def _stream_audio(
        self, first: Piece, recv: trio.MemoryReceiveChannel[Piece | None]
    ) -> bool:
        """Send the audio in random chunks, paced; False if synthesis failed part way.

        Paced as a service that synthesises `realtime_factor` times faster than real time:
        the first chunk goes out at once (making it is what the first-byte delay stands
        for), and each later one once the audio up to its end has been made since then. The
        clock does not restart at the first byte: that would count the first chunk's audio
        twice and hold every later chunk back by it (on average a third of a 2,250-byte
        chunk, ~47 ms at 3x), which neither a real synthesiser nor the benchmarks' feeder
        (docs/benchmarks.md) does."""
        settings, faults = self._shared.settings, self._shared.faults
        first_byte = trio.current_time()
        chunker = Chunker(self._rng, settings.chunk_min, settings.chunk_max)
        chunker.add(first)
        corrupt_at: int | None = None
        made_by_first_byte: float | None = None  # seconds of audio the first chunk carried
        while (cut := await self._next_cut(chunker, recv)) is not None:
            start, end, chunk = cut.start, cut.end, cut.data
            position = chunker.seconds_at(end)
            if made_by_first_byte is None:
                made_by_first_byte = position
            elif settings.realtime_factor > 0:
                made = position - made_by_first_byte
                await trio.sleep_until(first_byte + made / settings.realtime_factor)
            if corrupt_at is None:
                corrupt_at = self._take_corruption(end)
            if corrupt_at is not None and end > corrupt_at:
                keep = max(corrupt_at - start, 0)
                chunk = chunk[:keep] + self._rng.randbytes(len(chunk) - keep)
            stall = faults.stall_after_bytes
            if stall is not None and end > stall:
                head = max(stall - start, 0)
                if head:
                    await self._send_audio(chunk[:head])
                await self._stall(stall)
                chunk = chunk[head:]
            await self._send_audio(chunk)
        return not chunker.failed

    @staticmethod
    async def _next_cut(
        chunker: Chunker, recv: trio.MemoryReceiveChannel[Piece | None]
    ) -> Cut | None:
        """The next chunk, waiting for synthesis as needed; None when all is sent (if synthesis
        failed part way, what it made still goes out first)."""
        while (cut := chunker.next_cut()) is None and not chunker.finished:
            try:
                piece = await recv.receive()
            except trio.EndOfChannel:
                chunker.finish()
                continue
            if piece is None:
                chunker.finish(failed=True)
            else:
                chunker.add(piece)
        return cut

    async def _stall(self, offset: int) -> None:
        faults = self._shared.faults
        faults.stall_after_bytes = None
        self._shared.stats.stalls += 1
        log.info("stalling a reply after byte %d (injected fault)", offset)
        await faults.wait_resumed()
        log.info("resuming the reply stalled after byte %d", offset)

    def _take_corruption(self, sent: int) -> int | None:
        """The corruption offset, taken by the first reply whose audio reaches past it."""
        faults = self._shared.faults
        offset = faults.corrupt_after_bytes
        if offset is None or offset >= sent:
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

    async def _send(self, frame: Start | End | ErrorFrame) -> None:
        await self._ws.send_message(encode_frame(frame))

    async def _fail(
        self, message: str, rid: object, *, started: bool = False, status: int = 500
    ) -> None:
        """Answer a failed request: its start with the failure's status (unless it went out
        already), an error frame, then its end. So a client that reads only start and end
        (pyht) finishes, and one that looks only for errors (Pipecat, the demo) sees one."""
        if not started:
            await self._send(Start(rid, status, message))
        await self._send(ErrorFrame(message, rid, status))
        await self._send(End(rid, status))

    async def _abort(self, why: str) -> None:
        # Closing TCP without a close frame is what a crash or a cut network looks like.
        log.info("aborting websocket connection %d (injected fault: %s)", self._number, why)
        self._aborted = True
        self._scope.cancel()
        await trio.aclose_forcefully(self._transport)
        await trio.lowlevel.checkpoint()  # unwinds this task now: its scope is cancelled


def _rendering(command: Command) -> Rendering:
    """What a command asks the audio engine for: its SSML when it sent some, else its text."""
    return Rendering(
        command.ssml or command.text,
        command.voice,
        command.speed,
        command.sample_rate,
        command.output_format,
        ssml=command.ssml is not None,
    )
