"""The SSIP listener: a Unix socket where Speech Dispatcher's clients (`spd-say`, speechd's
Python client, screen readers) connect; one reader task and one writer task per connection."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterable
from pathlib import Path

import trio

from playspeak.config import Config
from playspeak.control.server import SocketInUse, bind_unix_socket
from playspeak.door.door import Door, Visitor
from playspeak.door.peers import AccessPolicy
from playspeak.door.policy import Limits
from playspeak.errors import PlayspeakError
from playspeak.speaker import Speaker
from playspeak.ssip.protocol import Reply, SsipReader
from playspeak.ssip.session import Shared, SsipSession
from playspeak.utterances import UtteranceBuilder

log = logging.getLogger(__name__)

_PEER_GONE = (trio.BrokenResourceError, trio.ClosedResourceError)
RECEIVE_BYTES = 16384  # per read: small reads keep many clients' buffers small


def ssip_socket_path(config: Config) -> Path | None:
    """`ssip.socket` with `$VARS` and `~` expanded; None when the listener is off."""
    raw = config.ssip.socket
    return Path(os.path.expanduser(os.path.expandvars(raw))) if raw else None


def bind_ssip_socket(path: Path, mode: int) -> socket.socket:
    """Bind the SSIP socket (a stale file is replaced); PlayspeakError when a live server
    answers there — typically a Speech Dispatcher that was started first."""
    try:
        return bind_unix_socket(path, mode)
    except SocketInUse:
        raise PlayspeakError(
            f"ssip.socket {path}: another server (a Speech Dispatcher?) answers there; "
            "stop it or choose another path"
        ) from None


class SsipServer:
    """Serves SSIP on a bound listening socket until cancelled, behind a door (door/) with the
    same allow-lists and limits as the control socket; removes `path` when it ends."""

    def __init__(
        self,
        sock: socket.socket,
        speaker: Speaker,
        builder: UtteranceBuilder,
        *,
        path: Path | None = None,
        max_line_bytes: int = 65536,
        client_buffer: int = 1024,
        allow_uids: Iterable[int] = (),
        allow_groups: Iterable[str] = (),
        limits: Limits | None = None,
    ) -> None:
        self.sock = sock
        self.path = path
        self.shared = Shared(speaker, builder)
        self.max_line_bytes = max_line_bytes
        self.client_buffer = client_buffer
        try:
            access = AccessPolicy.from_config(allow_uids, allow_groups)
        except PlayspeakError:
            if path is not None:  # run() will not start to remove it
                path.unlink(missing_ok=True)
            raise
        self.door = Door(
            "SSIP",
            sock,
            self._serve_client,
            access=access,
            limits=limits or Limits(),
            farewell=lambda message: Reply(300, f"ERR {message}").encode(),
            refuse_as_reply=True,  # Speech Dispatcher's clients send CLIENT_NAME first
        )

    @classmethod
    def open(cls, config: Config, speaker: Speaker, builder: UtteranceBuilder) -> SsipServer:
        """Bind `config.ssip.socket` and make the server with `config`'s limits; messages are
        built by `builder` (the defaults in force, after reloads too)."""
        path = ssip_socket_path(config)
        if path is None:
            raise PlayspeakError("ssip.socket is not set")
        control = config.control
        return cls(
            bind_ssip_socket(path, config.ssip.socket_mode),
            speaker,
            builder,
            path=path,
            max_line_bytes=control.max_line_bytes,
            client_buffer=control.client_buffer,
            allow_uids=control.allow_uids,
            allow_groups=control.allow_groups,
            limits=Limits.from_config(control),
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.door.run)
                log.info("Speech Dispatcher (SSIP) clients served on %s", self.path or "a socket")
                task_status.started()
        finally:
            if self.path is not None:
                self.path.unlink(missing_ok=True)

    async def _serve_client(self, stream: trio.SocketStream, visitor: Visitor) -> None:
        send, recv = trio.open_memory_channel[bytes](max(self.client_buffer, 1))
        scope = trio.CancelScope()

        def write(line: bytes) -> None:
            try:
                send.send_nowait(line)
            except trio.WouldBlock:  # it stopped reading: it must not stall the daemon
                log.warning("%s is not reading its replies: disconnected", session)
                scope.cancel()
            except _PEER_GONE:
                pass

        session = SsipSession(self.shared, write, visitor.peer)
        visitor.busy = session.busy
        self.shared.sessions[session.client_id] = session
        log.debug("%s connected", session)
        with scope:
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._write, stream, recv, visitor, nursery.cancel_scope)
                    await self._read(stream, session, visitor)
                    send.close()  # the writer sends what is queued (QUIT's 231), then ends
            finally:
                session.close()
        log.debug("%s gone", session)

    async def _read(
        self, stream: trio.SocketStream, session: SsipSession, visitor: Visitor
    ) -> None:
        """Feed what arrives to the session until EOF, QUIT or a broken connection."""
        reader = SsipReader(self.max_line_bytes)
        while True:
            try:
                data = await stream.receive_some(RECEIVE_BYTES)
            except _PEER_GONE:
                return
            if not data:
                visitor.received(False, 0)
                return
            for item in reader.feed(data):
                if not session.handle(item):
                    return
            visitor.received(reader.unfinished, reader.buffered)

    @staticmethod
    async def _write(
        stream: trio.SocketStream,
        recv: trio.MemoryReceiveChannel[bytes],
        visitor: Visitor,
        scope: trio.CancelScope,
    ) -> None:
        async with recv:
            with contextlib.suppress(*_PEER_GONE):
                async for line in recv:
                    await stream.send_all(line)
                    visitor.touch()
                return
        scope.cancel()  # the peer went away: stop reading from it too
