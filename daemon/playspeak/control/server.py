"""The control socket: a Unix stream listener, line framing with limits, one task pair per client.

Lines are handed to a non-blocking command handler; bad lines get a JSON error naming the fault
and the line number, and never disturb other clients. The door (door/) checks each client
against the allow-lists and the shared limits; here each is rate-limited per line, and each
command is logged with the client's credentials.
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

from playspeak.config.sections import ControlConfig
from playspeak.control.protocol import Command, describe, encode_message, parse_line
from playspeak.control.ratelimit import TokenBucket
from playspeak.control.session import ClientSession
from playspeak.door.door import Door, Visitor
from playspeak.door.peers import AccessPolicy, give_to_group, resolve_group
from playspeak.door.policy import Limits
from playspeak.errors import ConfigError, PlayspeakError
from playspeak.events import Error
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
    """Serves clients on a bound listening socket until cancelled, behind a door (door/) that
    applies the allow-lists and the limits every front end shares.

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
        limits: Limits | None = None,
    ) -> None:
        self.on_close = on_close
        self.sock = sock
        self.handler = handler
        self.max_line_bytes = max_line_bytes
        self.limits = limits or Limits(max_clients=max_clients, uid_share=max_clients)
        self.client_buffer = client_buffer
        self.rate_limit = rate_limit
        self.rate_burst = rate_burst
        self.path = path
        self.clients: set[ClientSession] = set()
        try:
            self.access = AccessPolicy.from_config(allow_uids, allow_groups)
        except PlayspeakError:
            if path is not None:  # run() will not start to remove it
                path.unlink(missing_ok=True)
            raise
        self.door = Door(
            "control",
            sock,
            self._serve_client,
            access=self.access,
            limits=self.limits,
            farewell=lambda message: encode_message(Error(message)),
        )

    @classmethod
    def from_section(
        cls,
        control: ControlConfig,
        sock: socket.socket,
        handler: Handler,
        *,
        path: Path | None = None,
        on_close: Callable[[ClientSession], None] | None = None,
    ) -> ControlServer:
        """Serving `sock` as the [control] section says (limits, allow-lists, rates)."""
        return cls(
            sock,
            handler,
            max_line_bytes=control.max_line_bytes,
            max_clients=control.max_clients,
            client_buffer=control.client_buffer,
            path=path,
            on_close=on_close,
            rate_limit=control.rate_limit,
            rate_burst=control.rate_burst,
            allow_uids=control.allow_uids,
            allow_groups=control.allow_groups,
            limits=Limits.from_config(control),
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await self.door.run(task_status=task_status)
        finally:
            if self.path is not None:
                self.path.unlink(missing_ok=True)

    # ---- one client ---------------------------------------------------------------------

    async def _serve_client(self, stream: trio.SocketStream, visitor: Visitor) -> None:
        """Serve one client the door let in, until it is done and its utterances have ended."""
        session = ClientSession(stream, self.client_buffer, visitor.peer, self._bucket())
        session.wrote = visitor.touch
        visitor.busy = session.busy
        self.clients.add(session)
        try:
            log.debug("%s connected", session)
            await self._serve(session, visitor)
        finally:
            self.clients.discard(session)
            if self.on_close is not None:
                self.on_close(session)
            gone = f" ({session.dropped_reason or visitor.ended})"
            log.debug("%s gone%s", session, gone if gone != " ()" else "")

    def _bucket(self) -> TokenBucket | None:
        if self.rate_limit <= 0:
            return None
        return TokenBucket(self.rate_limit, self.rate_burst, trio.current_time())

    async def _serve(self, session: ClientSession, visitor: Visitor) -> None:
        with session.scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write, session, nursery.cancel_scope)
                await self._read_lines(session, visitor)
                await session.wait_utterances()
                session.close_outbox()

    @staticmethod
    async def _write(session: ClientSession, scope: trio.CancelScope) -> None:
        with contextlib.suppress(*_PEER_GONE):
            await session.write_lines()
            return
        scope.cancel()  # the peer went away: stop reading from it too

    # ---- lines --------------------------------------------------------------------------

    async def _read_lines(self, session: ClientSession, visitor: Visitor) -> None:
        buffer = bytearray()
        number = 0
        discarding = False  # inside a line that was too long, until its newline
        while True:
            try:
                data = await session.stream.receive_some(65536)
            except _PEER_GONE:
                return
            if not data:
                if buffer.strip() and not discarding:
                    # A line cut short (or trickled in and abandoned) is not acted on.
                    self._error(session, "the last line has no newline: not acted on", number + 1)
                visitor.received(False, 0)
                return
            buffer += data
            start = 0
            while (end := buffer.find(b"\n", start)) >= 0:
                raw = bytes(buffer[start:end])
                start = end + 1
                if discarding:
                    discarding = False
                    continue
                number += 1
                self._line(session, raw, number)
            if start:  # a fresh buffer for the rest: a bytearray keeps the size it once had
                buffer = bytearray(buffer[start:])
            if len(buffer) > self.max_line_bytes:
                if not discarding:
                    number += 1
                    self._error(session, self._too_long, number)
                discarding = True
                buffer = bytearray()
            visitor.received(bool(buffer) or discarding, len(buffer))

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
        session.send(Error(error, line=number))
        return False

    @staticmethod
    def _error(session: ClientSession, message: str, number: int) -> None:
        session.send(Error(message, line=number))
        if len(message) > LOGGED_ERROR_LEN:
            message = message[: LOGGED_ERROR_LEN - 1] + "…"
        log.info("%s line %d: refused: %s", session, number, message)
