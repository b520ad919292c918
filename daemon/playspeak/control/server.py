"""The control socket: a Unix stream listener, line framing with limits, one task pair per client.

Lines are handed to a non-blocking command handler; bad lines get a JSON error naming the fault
and the line number, and never disturb other clients. Each client is checked against the
allow-lists when it connects and rate-limited per line; each command is logged with the
client's credentials.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import stat
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import trio

from playspeak.control.peers import AccessPolicy, give_to_group, peer_of, resolve_group
from playspeak.control.protocol import Command, describe, encode, parse_line
from playspeak.control.ratelimit import TokenBucket
from playspeak.control.session import ClientSession
from playspeak.errors import ConfigError, PlayspeakError
from playspeak.sockdir import prepare_socket_dir

# The errors of a peer that went away mid-write.
_PEER_GONE = (trio.BrokenResourceError, trio.ClosedResourceError)
LOGGED_ERROR_LEN = 200  # an error repeated in the log is cut to this many characters

log = logging.getLogger(__name__)

# The reply's fields (for the log line), or None.
Handler = Callable[[ClientSession, Command, int], Mapping[str, Any] | None]


class SocketInUse(PlayspeakError):
    """Another live daemon answers on the socket path."""


def bind_unix_socket(path: Path, mode: int, group: str = "") -> socket.socket:
    """Bind and listen on `path` (parent made 0750 if missing; the /tmp fallback directory 0700,
    and refused with ConfigError when someone else made it or may enter it). A stale socket file
    left by a dead daemon is replaced; one a live daemon answers on is not (SocketInUse). With
    `group` (a name or a gid; ConfigError when there is no such group) the socket, and the
    directory when we create it, belong to that group before anyone can connect. A directory
    that cannot be made is a ConfigError naming it."""
    gid = resolve_group(group) if group else None
    if not prepare_socket_dir(path.parent) and not path.parent.exists():
        try:
            path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(
                f"cannot create the socket directory {path.parent}: {e.strerror}"
            ) from None
        if gid is not None:  # members must be able to reach the socket inside it
            give_to_group(path.parent, gid, group)
    _remove_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o777 & ~mode)  # no window in which the socket has looser rights
    try:
        sock.bind(str(path))
    except OSError as e:
        sock.close()
        raise PlayspeakError(f"cannot bind {path}: {e.strerror}") from None
    finally:
        os.umask(old_umask)
    try:
        os.chmod(path, mode)
        if gid is not None:
            give_to_group(path, gid, group)
    except BaseException:
        sock.close()
        path.unlink(missing_ok=True)
        raise
    sock.listen(128)
    return sock


def _remove_stale(path: Path) -> None:
    """Remove a socket file no daemon answers on; SocketInUse when one does."""
    if not (path.is_symlink() or path.exists()):
        return
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


class ControlServer:
    """Serves clients on a bound listening socket until cancelled.

    Raises ConfigError at construction for an allowed group that does not exist (and then
    removes the socket file at `path`, which it owns). The socket's group is set when it is
    bound (bind_unix_socket).
    """

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
        rate_limit: float = 0.0,
        rate_burst: int = 1,
        allow_uids: Iterable[int] = (),
        allow_groups: Iterable[str] = (),
    ) -> None:
        self.on_close = on_close
        self.sock = sock
        self.handler = handler
        self.max_line_bytes = max_line_bytes
        self.max_clients = max_clients
        self.client_buffer = client_buffer
        self.rate_limit = rate_limit
        self.rate_burst = rate_burst
        self.path = path
        self.clients: set[ClientSession] = set()
        self._full_logged = False  # "too many clients" is logged once per time the limit is hit
        try:
            self.access = AccessPolicy.from_config(allow_uids, allow_groups)
        except PlayspeakError:
            if path is not None:  # run() will not start to remove it
                path.unlink(missing_ok=True)
            raise

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(self.sock))
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(trio.serve_listeners, self._serve_client, [listener])
                task_status.started()
        finally:
            if self.path is not None:
                self.path.unlink(missing_ok=True)

    # ---- one client ---------------------------------------------------------------------

    async def _serve_client(self, stream: trio.SocketStream) -> None:
        peer = peer_of(stream.socket)
        async with stream:
            if len(self.clients) >= self.max_clients:
                self._log_full(peer)
                await self._refuse(stream, f"too many clients (limit {self.max_clients})")
                return
            session = ClientSession(stream, self.client_buffer, peer, self._bucket())
            self.clients.add(session)  # before any checkpoint: the limit must count it at once
            try:
                if not await self._allowed(session):
                    await self._refuse(stream, self.access.refusal(peer))
                    return
                log.debug("%s connected", session)
                await self._serve(session)
            finally:
                self.clients.discard(session)
                if len(self.clients) < self.max_clients:
                    self._full_logged = False
                if self.on_close is not None:
                    self.on_close(session)
                gone = f" ({session.dropped_reason})" if session.dropped_reason else ""
                log.debug("%s gone%s", session, gone)

    def _bucket(self) -> TokenBucket | None:
        if self.rate_limit <= 0:
            return None
        return TokenBucket(self.rate_limit, self.rate_burst, trio.current_time())

    def _log_full(self, peer: object) -> None:
        # A flood of connections must not become a flood of log lines: once per episode.
        level = logging.DEBUG if self._full_logged else logging.WARNING
        self._full_logged = True
        log.log(level, "refusing client %s: %d clients connected", peer, len(self.clients))

    async def _allowed(self, session: ClientSession) -> bool:
        if not self.access.active:
            return True
        # The group database may be remote (LDAP, sssd): look it up off the trio thread.
        if await trio.to_thread.run_sync(self.access.allows, session.peer):
            return True
        log.warning("refusing %s: not in control.allow_uids/allow_groups", session)
        return False

    @staticmethod
    async def _refuse(stream: trio.SocketStream, message: str) -> None:
        """Tell a client why it is not served (if it takes the line within a second)."""
        with trio.move_on_after(1), contextlib.suppress(*_PEER_GONE):
            await stream.send_all(encode("error", error=message))

    async def _serve(self, session: ClientSession) -> None:
        with session.scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write, session, nursery.cancel_scope)
                await self._read_lines(session)
                await session.wait_utterances()
                session.close_outbox()

    @staticmethod
    async def _write(session: ClientSession, scope: trio.CancelScope) -> None:
        with contextlib.suppress(*_PEER_GONE):
            await session.write_lines()
            return
        scope.cancel()  # the peer went away: stop reading from it too

    # ---- lines --------------------------------------------------------------------------

    async def _read_lines(self, session: ClientSession) -> None:
        buffer = bytearray()
        number = 0
        discarding = False  # inside a line that was too long, until its newline
        while True:
            try:
                data = await session.stream.receive_some(65536)
            except _PEER_GONE:
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
                    self._error(session, self._too_long, number)
                discarding = True
                buffer.clear()

    @property
    def _too_long(self) -> str:
        return f"line too long (limit {self.max_line_bytes} bytes)"

    def _line(self, session: ClientSession, raw: bytes, number: int) -> None:
        if len(raw) > self.max_line_bytes:
            self._error(session, self._too_long, number)
            return
        raw = raw.rstrip(b"\r")
        if not raw.strip():
            return  # blank lines are harmless: `printf 'a\n\nb\n'`
        if not self._admit(session, number):
            return
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            self._error(session, f"invalid UTF-8 at byte {e.start}", number)
            return
        try:
            command = parse_line(text)
            reply = self.handler(session, command, number)
        except PlayspeakError as e:  # ProtocolError, QueueFull, ...
            self._error(session, str(e), number)
            return
        except Exception:  # a bug must cost this line, not every client's daemon
            log.exception("%s line %d: internal error", session, number)
            self._error(session, "internal error (see the daemon's log)", number)
            return
        log.info("%s line %d: %s", session, number, describe(command, reply))

    def _admit(self, session: ClientSession, number: int) -> bool:
        """Take a token from the client's bucket; refuse the line when there is none."""
        bucket = session.bucket
        if bucket is None or bucket.take(trio.current_time()):
            session.limited = False
            return True
        if not session.limited:  # once per run of refused lines, not once per line
            log.warning("%s exceeds the rate limit (%g lines/s)", session, bucket.rate)
        session.limited = True
        error = f"rate limit exceeded ({bucket.rate:g} lines/s)"
        session.send(encode("error", error=error, line=number))
        return False

    @staticmethod
    def _error(session: ClientSession, message: str, number: int) -> None:
        session.send(encode("error", error=message, line=number))
        if len(message) > LOGGED_ERROR_LEN:
            message = message[: LOGGED_ERROR_LEN - 1] + "…"
        log.info("%s line %d: refused: %s", session, number, message)
