"""One door: a listening Unix socket whose connections are checked against the allow-lists,
counted (a cap with a per-uid share), timed (idle, slow sender) and budgeted (unfinished input)
before and while a front end serves them. accept(2) that runs out of file descriptors backs off
with one log line per episode, never a traceback per attempt."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import itertools
import logging
import math
import os
import socket
from collections.abc import Awaitable, Callable

import trio

from playspeak.door.peers import AccessPolicy, Peer, peer_of
from playspeak.door.policy import Budget, Limits, expiry, make_room

log = logging.getLogger(__name__)

# accept(2) errors that mean "out of descriptors or memory": wait for some to be freed.
_CAPACITY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
BACKOFF_MIN, BACKOFF_MAX = 0.05, 1.0  # seconds between accept attempts while out of fds
REFUSED_WAITING = 16  # refused clients that may wait for their first command at once
REFUSAL_LOG_EVERY = 60.0  # seconds: a warning of a kind given again sooner goes to debug
_PEER_GONE = (trio.BrokenResourceError, trio.ClosedResourceError)
_numbers = itertools.count(1)


def give_back_memory() -> None:
    """Return the heap freed after a flood to the system (glibc's malloc_trim; a no-op
    elsewhere). Takes a few ms; called once per flood, when it is over."""
    name = ctypes.util.find_library("c")
    with contextlib.suppress(OSError, AttributeError, TypeError):
        ctypes.CDLL(name).malloc_trim(0)


# A front end's way of serving one admitted connection (returns when it is done with it).
Handler = Callable[[trio.SocketStream, "Visitor"], Awaitable[None]]


class Visitor:
    """One admitted connection as its door sees it. The front end serving it reports what it
    reads (`received`) and writes (`touch`), and says whether it waits on something (`busy`:
    speech pending, subscribed) — a busy connection is never closed as idle. All on trio's
    thread."""

    def __init__(self, door: Door, stream: trio.SocketStream, peer: Peer) -> None:
        self.number = next(_numbers)
        self.door = door
        self.stream = stream
        self.peer = peer
        self.last_active = trio.current_time()
        self.line_started: float | None = None  # the first byte of an unfinished line
        self.busy: Callable[[], bool] = lambda: False
        self.scope = trio.CancelScope()  # cancelled when the door closes the connection
        self.ended = ""  # why the door closed it
        self._line_began = trio.Event()

    @property
    def uid(self) -> int | None:
        return self.peer.uid

    def __str__(self) -> str:
        return f"{self.door.name} connection {self.number} ({self.peer})"

    def touch(self) -> None:
        """A line went out (or something else that counts as activity)."""
        self.last_active = trio.current_time()

    def received(self, unfinished: bool, buffered: int) -> None:
        """Bytes came in: the reader now holds `buffered` bytes of input it could not act on
        yet, and `unfinished` says whether it is inside a line (or a SPEAK text). Never blocks;
        may close this or other connections that hold too much."""
        if self.ended:
            return
        self.last_active = now = trio.current_time()
        if not unfinished:
            self.line_started = None
        elif self.line_started is None:
            self.line_started = now
            self._line_began.set()
        self.door.hold(self, buffered)

    def end(self, reason: str) -> None:
        """Close the connection (once), telling the client `reason` if it still listens."""
        if not self.ended:
            self.ended = reason
            self.scope.cancel()

    async def watch(self, limits: Limits) -> None:
        """Close this connection when it has been idle, or inside one line, too long."""
        while True:
            now = trio.current_time()
            due = expiry(now, self.last_active, self.line_started, self.busy(), limits)
            if due is not None and due.at <= now and due.reason:
                log.info("%s: %s: disconnected", self, due.reason)
                self.end(f"{due.reason}: disconnected")
                return
            wake = due.at if due is not None else math.inf
            with trio.move_on_at(wake):
                if self.line_started is None and limits.line_timeout > 0:
                    self._line_began = trio.Event()
                    await self._line_began.wait()  # a line began: its own deadline now
                else:
                    await trio.sleep_forever()


class Door:
    """Serves one bound, listening socket with `handler` until cancelled.

    `name` prefixes its log lines ("control", "SSIP"); `farewell` encodes a message for a client
    that is refused or closed (in that front end's protocol). With `refuse_as_reply`, a refused
    client's message waits (a second at most) for its first command and answers it: a client
    that writes before it reads (SSIP's) then reads the refusal instead of dying of SIGPIPE.
    """

    def __init__(
        self,
        name: str,
        sock: socket.socket,
        handler: Handler,
        *,
        access: AccessPolicy,
        limits: Limits,
        farewell: Callable[[str], bytes],
        refuse_as_reply: bool = False,
    ) -> None:
        self.name = name
        self.sock = sock
        self.handler = handler
        self.access = access
        self.limits = limits
        self.farewell = farewell
        self.refuse_as_reply = refuse_as_reply
        self._answering = 0  # refused clients whose first command is awaited
        self.visitors: set[Visitor] = set()
        self.budget: Budget[Visitor] = Budget(limits.max_pending_bytes)
        self._checking = 0  # connections waiting for a group look-up
        self._lookups = trio.CapacityLimiter(4)
        self._full_logged = False  # "refusing client" once per time the door is full
        self._flooded = False  # full, or over the budget, since memory was last given back
        self._warned: dict[str, float] = {}  # when each kind of warning was last given

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(self.sock))
        async with listener, trio.open_nursery() as nursery:
            task_status.started()
            await self._accept(listener, nursery)

    async def _accept(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        delay, since, failures = 0.0, 0.0, 0
        while True:
            try:
                stream = await listener.accept()
            except OSError as e:
                if e.errno not in _CAPACITY_ERRNOS:
                    raise
                if not failures:
                    since = trio.current_time()
                    log.warning(
                        "%s: cannot accept connections: %s (%s); retrying with back-off",
                        self.name,
                        errno.errorcode.get(e.errno, e.errno),
                        os.strerror(e.errno),
                    )
                failures += 1
                delay = min(BACKOFF_MAX, max(BACKOFF_MIN, delay * 2))
                await trio.sleep(delay)
                continue
            if failures:
                log.info(
                    "%s: accepting connections again after %.1f s (%d attempts failed)",
                    self.name,
                    trio.current_time() - since,
                    failures,
                )
                delay, failures = 0.0, 0
            nursery.start_soon(self._serve, stream)

    # ---- one connection -----------------------------------------------------------------

    async def _serve(self, stream: trio.SocketStream) -> None:
        peer = peer_of(stream.socket)  # type: ignore[arg-type]  # trio's SocketType wraps a socket.socket
        async with stream:
            refusal = await self._check(peer)
            if refusal:
                await self._refuse(stream, refusal)
                return
            staying = [v for v in self.visitors if not v.ended]  # not those already leaving
            room = make_room(staying, peer.uid, self.limits)
            if isinstance(room, str):
                self._log_full(peer)
                await self._refuse(stream, room)
                return
            if room is not None:
                self._make_room(room, peer)
            visitor = Visitor(self, stream, peer)
            self.visitors.add(visitor)  # before any checkpoint: the limit counts it at once
            try:
                await self._visit(stream, visitor)
            finally:
                self.visitors.discard(visitor)
                self.budget.release(visitor)
                if len(self.visitors) < self.limits.max_clients:
                    self._full_logged = False
                quiet = len(self.visitors) <= self.limits.max_clients // 8
                if self._flooded and quiet and not self.budget.total:
                    self._flooded = False
                    give_back_memory()

    def _make_room(self, leaving: Visitor, newcomer: Peer) -> None:
        held = len([v for v in self.visitors if v.uid == leaving.uid])
        if leaving.uid != newcomer.uid and held > self.limits.uid_share:
            kind, why = "room: share", f"uid {leaving.uid} holds more than its share of clients"
        else:
            kind, why = "room: idle", "idle, and the door is full"
        self._warn(kind, "%s makes room for uid %s (%s)", leaving, newcomer.uid, why)
        leaving.end(f"{why}: disconnected")

    async def _visit(self, stream: trio.SocketStream, visitor: Visitor) -> None:
        with visitor.scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(visitor.watch, self.limits)
                await self.handler(stream, visitor)
                nursery.cancel_scope.cancel()
        if visitor.ended:
            await self._send(stream, visitor.ended)

    async def _check(self, peer: Peer) -> str:
        """Why `peer` may not come in ("" when it may). The uid list is checked at once; a
        group look-up (the database may be remote: LDAP, sssd) runs in a worker thread."""
        allowed = self.access.decided(peer)
        if allowed is None:
            if self._checking >= self.limits.max_clients:
                return f"too many clients (limit {self.limits.max_clients})"
            self._checking += 1
            try:
                allowed = await trio.to_thread.run_sync(
                    self.access.allows, peer, limiter=self._lookups
                )
            finally:
                self._checking -= 1
        if allowed:
            return ""
        self._log_refusal(peer)
        return self.access.refusal(peer)

    def _log_refusal(self, peer: Peer) -> None:
        self._warn(
            f"refused {peer.uid}",
            "%s: refusing %s: not in control.allow_uids/allow_groups",
            self.name,
            peer,
        )

    def _log_full(self, peer: Peer) -> None:
        self._flooded = True
        level = logging.DEBUG if self._full_logged else logging.WARNING
        self._full_logged = True
        log.log(level, "%s: refusing client %s: %d clients connected", self.name, peer, len(self))

    def __len__(self) -> int:
        return len(self.visitors)

    async def _refuse(self, stream: trio.SocketStream, message: str) -> None:
        """Tell a refused client why; as the reply to its first command when so configured
        (while few wait for one: a flood of refused clients must not hold descriptors)."""
        if self.refuse_as_reply and self._answering < REFUSED_WAITING:
            self._answering += 1
            try:
                with trio.move_on_after(1), contextlib.suppress(*_PEER_GONE):
                    await stream.receive_some(4096)
            finally:
                self._answering -= 1
        await self._send(stream, message)

    async def _send(self, stream: trio.SocketStream, message: str) -> None:
        """Tell a client why it is not (or no longer) served, if it takes it within a second."""
        with trio.move_on_after(1), contextlib.suppress(*_PEER_GONE):
            await stream.send_all(self.farewell(message))

    def hold(self, visitor: Visitor, size: int) -> None:
        """`visitor` holds `size` bytes of unfinished input; the largest holders go when all
        together hold more than the budget."""
        for holder, held in self.budget.update(visitor, size):
            self._flooded = True
            self.budget.release(holder)
            self._warn(
                "budget",
                "%s holds %d bytes of unfinished input, all clients together over %d: disconnected",
                holder,
                held,
                self.limits.max_pending_bytes,
            )
            holder.end(
                f"too much unfinished input (all clients together over "
                f"{self.limits.max_pending_bytes} bytes): disconnected"
            )

    def _warn(self, kind: str, message: str, *args: object) -> None:
        """A warning of this kind at most once a minute, the rest at debug: a flood of
        connections must not become a flood of log lines."""
        now = trio.current_time()
        recent = now - self._warned.get(kind, -math.inf) < REFUSAL_LOG_EVERY
        if not recent:
            self._warned[kind] = now
        self._flooded = True
        log.log(logging.DEBUG if recent else logging.WARNING, message, *args)
