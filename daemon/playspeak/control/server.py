"""The control socket: a Unix stream listener, line framing with limits, one task pair per client.

Lines are handed to a non-blocking command handler; bad lines get a JSON error naming the fault
and the line number, and never disturb other clients.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import stat
import struct
from collections.abc import Callable
from pathlib import Path

import trio

from playspeak.control.protocol import Command, encode, parse_line
from playspeak.control.session import ClientSession
from playspeak.errors import PlayspeakError, ProtocolError

# The errors of a peer that went away mid-write.
_PEER_GONE = (trio.BrokenResourceError, trio.ClosedResourceError)

log = logging.getLogger(__name__)

Handler = Callable[[ClientSession, Command, int], None]


class SocketInUse(PlayspeakError):
    """Another live daemon answers on the socket path."""


def bind_unix_socket(path: Path, mode: int) -> socket.socket:
    """Bind and listen on `path` (parent made 0750 if missing). A stale socket file left by a dead
    daemon is replaced; one a live daemon answers on is not (SocketInUse)."""
    path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
    if path.is_symlink() or path.exists():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise PlayspeakError(f"{path} exists and is not a socket: remove it or choose another")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.settimeout(1.0)
            probe.connect(str(path))
        except OSError as e:
            if e.errno not in (errno.ECONNREFUSED, errno.ENOENT):
                raise PlayspeakError(f"cannot check {path}: {e.strerror}") from None
            log.info("replacing stale socket %s", path)
            path.unlink(missing_ok=True)
        else:
            raise SocketInUse(f"another playspeak daemon is answering on {path}")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o777 & ~mode)  # no window in which the socket has looser rights
    try:
        sock.bind(str(path))
    except OSError as e:
        sock.close()
        raise PlayspeakError(f"cannot bind {path}: {e.strerror}") from None
    finally:
        os.umask(old_umask)
    os.chmod(path, mode)
    sock.listen(128)
    return sock


def peer_credentials(stream: trio.SocketStream) -> str:
    """`uid=… pid=…` of the connected process, from SO_PEERCRED."""
    try:
        raw = stream.socket.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
        pid, uid, _gid = struct.unpack("3i", raw)
        return f"uid={uid} pid={pid}"
    except OSError:
        return "uid=? pid=?"


class ControlServer:
    """Serves clients on a bound listening socket until cancelled."""

    def __init__(
        self,
        sock: socket.socket,
        handler: Handler,
        *,
        max_line_bytes: int,
        max_clients: int,
        client_buffer: int,
        path: Path | None = None,
        on_close: Callable[[ClientSession], None] | None = None,
    ) -> None:
        self.on_close = on_close
        self.sock = sock
        self.handler = handler
        self.max_line_bytes = max_line_bytes
        self.max_clients = max_clients
        self.client_buffer = client_buffer
        self.path = path
        self.clients: set[ClientSession] = set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(self.sock))
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(trio.serve_listeners, self._serve_client, [listener])
                task_status.started()
        finally:
            if self.path is not None:
                self.path.unlink(missing_ok=True)

    async def _serve_client(self, stream: trio.SocketStream) -> None:
        peer = peer_credentials(stream)
        async with stream:
            if len(self.clients) >= self.max_clients:
                log.warning("refusing client %s: %d clients connected", peer, len(self.clients))
                line = encode("error", error=f"too many clients (limit {self.max_clients})")
                with trio.move_on_after(1), contextlib.suppress(*_PEER_GONE):
                    await stream.send_all(line)
                return
            session = ClientSession(stream, self.client_buffer, peer)
            self.clients.add(session)
            log.debug("client %d connected (%s)", session.id, peer)
            try:
                with session.scope:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._write, session, nursery.cancel_scope)
                        await self._read_lines(session)
                        await session.wait_utterances()
                        session.close_outbox()
            finally:
                self.clients.discard(session)
                if self.on_close is not None:
                    self.on_close(session)
                log.debug("client %d gone", session.id)

    @staticmethod
    async def _write(session: ClientSession, scope: trio.CancelScope) -> None:
        with contextlib.suppress(*_PEER_GONE):
            await session.write_lines()
            return
        scope.cancel()  # the peer went away: stop reading from it too

    async def _read_lines(self, session: ClientSession) -> None:
        buffer = bytearray()
        number = 0
        discarding = False  # inside a line that was too long, until its newline
        while True:
            try:
                data = await session.stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if not data:
                if buffer and not discarding:  # a last line without its newline
                    self._line(session, bytes(buffer), number + 1)
                return
            buffer += data
            while (end := buffer.find(b"\n")) >= 0:
                raw = bytes(buffer[:end])
                del buffer[: end + 1]
                if discarding:
                    discarding = False
                    continue
                number += 1
                self._line(session, raw, number)
            if len(buffer) > self.max_line_bytes:
                if not discarding:
                    number += 1
                    self._error(
                        session, f"line too long (limit {self.max_line_bytes} bytes)", number
                    )
                discarding = True
                buffer.clear()

    def _line(self, session: ClientSession, raw: bytes, number: int) -> None:
        if len(raw) > self.max_line_bytes:
            self._error(session, f"line too long (limit {self.max_line_bytes} bytes)", number)
            return
        raw = raw.rstrip(b"\r")
        if not raw.strip():
            return  # blank lines are harmless: `printf 'a\n\nb\n'`
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            self._error(session, f"invalid UTF-8 at byte {e.start}", number)
            return
        try:
            command = parse_line(text)
        except ProtocolError as e:
            self._error(session, str(e), number)
            return
        log.debug(
            "client %d (%s) line %d: %s", session.id, session.peer, number, type(command).__name__
        )
        try:
            self.handler(session, command, number)
        except PlayspeakError as e:
            self._error(session, str(e), number)

    @staticmethod
    def _error(session: ClientSession, message: str, number: int) -> None:
        session.send(encode("error", error=message, line=number))
