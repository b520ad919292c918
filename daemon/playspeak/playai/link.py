"""The PlayAI link: one long-lived websocket per model, ordered replies matched to requests.

A supervisor loop authenticates, connects and reconnects with capped, jittered backoff; inside a
connection, one reader routes start / audio / end / error frames to the `Reply` of each request,
strictly in request order. Back-pressure: each reply's audio channel is bounded, so a slow
consumer stops the reader, and trio-websocket then stops reading the socket.

Liveness: a watcher fails a connection over when the reply at its head brings no audio within
`first_audio_timeout`, or nothing more within `stall_timeout` once its audio flows (time in which
the reader waits for a full reply channel does not count: that is our consumer, not the
service). Its replies then fail with a retriable LinkError (the speaker asks again) and the link
reconnects (after the backoff); until it is connected again its state is "stalled". An idle
connection is pinged, so that a dead peer is found before a request is sent into it.

Economy: the websocket URLs of one auth answer are reused for every (re)connection
until shortly before they expire (playai/urls.py); the link connects on the first request (or
at start with `warm_up`) and closes itself after `idle_close` seconds with nothing asked
(state "idle"); every reconnect after a failure waits a jittered, doubling delay, and at least
the Retry-After of a 429 (only a stall's first reconnect is at once: the stall timeout has
already spaced it). Those decisions (what follows a failed attempt or a close, when to
renew) are linkstate.Supervision's and linkstate.renewal_time's, and those inside a connection
connection.py's: ConnectionBook's (what each frame does to the pending replies) and
ConnectionWatch's (when a reply is overdue, when to close an idle connection, to ping, to give
up on a missing pong), all free of I/O; this module moves the bytes, keeps the timers and
applies what they decide.

Replies are matched by request id. A start/end/error frame naming an unknown id is ignored; one
with a null id belongs to the reply being streamed only if that reply's own start came with a
null id too (a service that does not echo ids). A reply whose frames never come back fails
(retriable) once `first_audio_timeout` passes, like a stalled one; a reply whose end is skipped
(the next reply starts) fails, not retriable: part of it may have been played.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionTimeout,
    DisconnectionTimeout,
    HandshakeError,
    WebSocketConnection,
    open_websocket_url,
)

from playspeak.backoff import Backoff
from playspeak.config.sections import ApiConfig, LinkConfig
from playspeak.errors import AuthError, BadJsonError, LinkError, leaves
from playspeak.health import LinkHealth
from playspeak.log import redact, register_secret
from playspeak.playai.auth import CredentialsRefused, RateLimited
from playspeak.playai.connection import ConnectionBook, ConnectionWatch, Due
from playspeak.playai.linkstate import (
    CLOSED_BY_US,
    AfterClose,
    CloseKind,
    CloseReason,
    Failure,
    LinkState,
    Retry,
    Supervision,
    renewal_time,
)
from playspeak.playai.urls import UrlCache
from playspeak.playai.wire import (
    Action,
    CommandRejected,
    ModelNotOffered,
    OtherFrame,
    TtsCommand,
    parse_frame,
)

log = logging.getLogger(__name__)

MAX_MODELS = 16  # links (one per model name) a pool starts at most
REPLY_BUFFER_CHUNKS = 32  # per request; bytes beyond wait in the socket, not in memory
STABLE_CONNECTION = 5.0  # seconds: a connection that lived this long resets the backoff
# A URL expiry shorter than this is not used to time renewals: an open connection does not
# need its URL again, and renewing every few seconds would cost an auth call each time (a 2 s
# expiry: 20 auth calls in 32 s from an idle daemon). A new connection still authenticates
# again once the kept URL has expired (playai/urls.py).
MIN_RENEWAL_LIFETIME = 30.0


class Reply:
    """The answer to one request: its audio chunks in order, then the end (or an error).

    Owned by the link's reader (sending side) and one consumer (receiving side).
    """

    def __init__(self, request_id: str, on_abandon: Callable[[Reply], None] | None = None) -> None:
        self.request_id = request_id
        self._on_abandon = on_abandon  # the link's: whether to reconnect rather than drain
        # each chunk with the trio time it was read off the websocket
        self._send, self._recv = trio.open_memory_channel[tuple[bytes, float]](REPLY_BUFFER_CHUNKS)
        self.started = False
        self.complete = trio.Event()  # set on end, error or discard
        self.error: LinkError | None = None
        self.retriable = False  # True when the connection failed, not the request itself
        self.bytes_received = 0
        self.discarded = False
        self.echoed = True  # its start frame named its id (False: the service sends null ids)
        self._finished = False
        self.head_since: float | None = None  # when it became the oldest pending on the wire

    async def receive(self) -> bytes | None:
        """The next audio chunk; None after the end. Raises LinkError if the request failed."""
        stamped = await self.receive_stamped()
        return None if stamped is None else stamped[0]

    async def receive_stamped(self) -> tuple[bytes, float] | None:
        """The next audio chunk and the trio time it arrived (it may have waited here since,
        if the consumer was busy); None after the end. Raises LinkError as receive() does."""
        try:
            return await self._recv.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            if self.error is not None:
                raise self.error from None
            return None

    def discard(self) -> None:
        """The consumer no longer wants this audio: the reader drops what still arrives."""
        self.discarded = True
        self._recv.close()
        self.complete.set()

    def abandon(self) -> None:
        """`discard`, and if the service is still streaming it, let its link reconnect at once
        (Link.restart) so that the next request is not answered behind the unwanted rest."""
        streaming = not self._finished and not self.discarded
        self.discard()
        if streaming and self._on_abandon is not None:
            self._on_abandon(self)

    def _end(self) -> None:
        if not self._finished:
            self._finished = True
            self._send.close()
            self.complete.set()

    def _fail(self, error: LinkError, *, retriable: bool) -> None:
        if not self._finished:
            self.error = error
            self.retriable = retriable
            self._end()

    async def _deliver(self, chunk: bytes) -> None:
        self.bytes_received += len(chunk)
        # A discarded reply's channel is closed: its audio is dropped.
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self._send.send((chunk, trio.current_time()))


@dataclass
class _Connection:
    ws: WebSocketConnection
    watch: ConnectionWatch
    book: ConnectionBook[Reply] = field(default_factory=ConnectionBook)
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    opened: float = field(default_factory=trio.current_time)
    closed: trio.Event = field(default_factory=trio.Event)
    reason: CloseReason = CLOSED_BY_US  # why it closed
    # Liveness (link.py's docstring). Owned by the connection's tasks, read by its watcher.
    reading_since: float | None = None  # the reader waits for the service since; None: busy
    progress: trio.Event = field(default_factory=trio.Event)  # set (and replaced) on changes
    quiet: bool = False  # it closed with no reply pending (nothing was lost)

    def poke(self) -> None:
        """Something the watcher's deadlines depend on changed (the idle clock restarts)."""
        self.watch.progressed(trio.current_time())
        self.wake()

    def wake(self) -> None:
        """The watcher looks again."""
        self.progress.set()
        self.progress = trio.Event()

    def add(self, reply: Reply) -> None:
        self.book.add(reply, trio.current_time())
        self.poke()

    def remove(self, reply: Reply) -> None:
        self.book.remove(reply, trio.current_time())
        self.poke()

    def closed_by(self, reason: CloseReason) -> None:
        """What ended the stream, unless we had decided to close it (forcing a close on a dead
        peer ends its stream too: that is not why)."""
        if not self.reason.decided_by_us:
            self.reason = reason

    def retire_when_idle(self) -> None:
        """Close once no reply is pending (at once if none is)."""
        self.book.retiring = True
        if not self.book.pending:
            self.scope.cancel()

    @property
    def busy(self) -> bool:
        """Replies (wanted or discarded) whose end has not arrived: the wire is in use."""
        return bool(self.book.pending)


@dataclass(frozen=True)
class LinkSettings:
    base_url: str
    api_key: str = field(repr=False)
    user_id: str = field(repr=False)
    model: str = "Play3.0-mini"
    connect_timeout: float = 10.0
    request_patience: float = 30.0  # how long a request waits for a connection before failing
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    heartbeat: float = 20.0  # ping an idle connection this often; no pong as long: it is dead
    first_audio_timeout: float = 5.0  # a reply with no audio this long fails over
    stall_timeout: float = 5.0  # a reply whose audio stops this long fails over
    max_age: float = 3600.0  # the service closes a connection after this long
    renew_margin: float = 60.0  # open the next one this long before (at most a quarter of max_age)
    warm_up: bool = True  # connect at start; False: on the first request
    idle_close: float = 0.0  # close after this long with nothing asked (0: keep it open)

    @classmethod
    def from_config(
        cls, api: ApiConfig, link: LinkConfig, *, base_url: str, api_key: str, user_id: str
    ) -> LinkSettings:
        """From the [api] and [link] sections, for the service at `base_url` (the configured
        one, or the embedded server with its own credentials)."""
        return cls(
            base_url=base_url,
            api_key=api_key,
            user_id=user_id,
            model=api.model,
            connect_timeout=api.connect_timeout,
            request_patience=api.request_patience,
            first_audio_timeout=api.first_audio_timeout,
            stall_timeout=api.stall_timeout,
            heartbeat=api.ping_interval,
            max_age=api.connection_max_age,
            warm_up=link.warm_up,
            idle_close=link.idle_close,
        )


class Link:
    """One model's websocket, kept open across utterances and reopened when it drops."""

    def __init__(
        self, settings: LinkSettings, http: httpx.AsyncClient, urls: UrlCache | None = None
    ) -> None:
        self.settings = settings
        self._http = http
        self.urls = urls or url_cache(http, settings)
        self._demand = trio.Event()  # a request waits for a connection (lazy connecting)
        self._waiting = 0  # requests waiting for a connection now
        self._refused = 0  # attempts that found the model not offered (they fail requests)
        self._refusal = ""
        self._conn: _Connection | None = None
        self._conn_changed = trio.Event()
        self._send_lock = trio.Lock()
        self._ids = itertools.count(1)
        self.state: LinkState = LinkState.STARTING if settings.warm_up else LinkState.IDLE
        self.last_error = ""
        self.connections = 0
        self._restart_now = False
        self.renewals = 0
        self.stalls = 0
        # After a stall, the first reconnect attempt that fails ends the wait of the requests
        # (a stalled service is not waited for the whole request_patience); until the next
        # connection, new requests fail at once with the reason.
        self._after_stall = False
        self._unreachable_after_stall = False
        # The auth call refused the credentials (401/403): until a connection opens again,
        # requests fail at once with that reason instead of waiting `request_patience` for a
        # retry that the same credentials cannot pass (the supervisor still retries).
        self._credentials_refused = ""
        register_secret(settings.api_key)
        register_secret(settings.user_id)

    # ---- public -------------------------------------------------------------------------

    async def request(self, command: Mapping[str, Any]) -> Reply:
        """Send one command (the fields of a TtsCommand); returns its Reply at once (audio
        follows). Waits for a connection up to `request_patience`, then raises LinkError naming
        the last connection error (or at once what is wrong with the command)."""
        try:
            wanted = TtsCommand.from_fields(command)
        except CommandRejected as e:
            raise LinkError(f"cannot ask the TTS service: {e.message}") from None
        refused = self._refused
        with trio.move_on_after(self.settings.request_patience):
            while True:
                conn = self._conn
                if conn is None:
                    if self._unreachable_after_stall:
                        raise LinkError(
                            f"the TTS service stalled and did not answer again: {self.last_error}"
                        )
                    if self._refused != refused:
                        raise LinkError(self._refusal)
                    if self._credentials_refused:
                        raise AuthError(self._credentials_refused)
                    self._demand.set()
                    self._waiting += 1
                    try:
                        await self._wait_changed()
                    finally:
                        self._waiting -= 1
                    continue
                async with self._send_lock:
                    if conn is not self._conn:
                        continue
                    request_id = str(wanted.request_id or f"r{next(self._ids)}")
                    reply = Reply(request_id, self._abandoned)
                    conn.add(reply)  # before sending: the answer may come at once
                    try:
                        await conn.ws.send_message(replace(wanted, request_id=request_id).to_json())
                    except ConnectionClosed:
                        conn.remove(reply)
                        await self._wait_changed()
                        continue
                    return reply
        reason = self.last_error or "not connected"
        raise LinkError(f"no connection to the TTS service: {reason}")

    def restart(self) -> None:
        """Drop the connection now and open a fresh one at once (new requests wait for it).
        Used when the current one is busy streaming audio nobody wants any more."""
        conn = self._conn
        if conn is None:
            return
        log.info("model %s: reconnecting to skip an unwanted reply", self.settings.model)
        self._restart_now = True
        self._set_conn(None)
        conn.scope.cancel()

    def _abandoned(self, reply: Reply) -> None:
        """A reply nobody wants is still streaming in: reconnect if it is on the connection in
        use (one being retired closes by itself once its replies have ended)."""
        if self._conn is not None and reply in self._conn.book.pending:
            self.restart()

    def health(self) -> LinkHealth:
        return LinkHealth(self.state, self.last_error, self.settings.model)

    def status(self) -> dict[str, Any]:
        pending = len(self._conn.book.pending) if self._conn else 0
        return {
            "model": self.settings.model,
            "state": self.state,
            "connections": self.connections,
            "pending": pending,
            "last_error": self.last_error,
            "stalls": self.stalls,
            "auths": self.urls.auths,
        }

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Supervise the connection until cancelled. Ready at once: it connects in the
        background (at once with `warm_up`, else on the first request). Before a connection
        reaches its maximum age the next one is opened, and the old one closes after its last
        reply: no utterance is cut at the hour mark."""
        task_status.started()
        s = self.settings
        plan = Supervision(
            Backoff(s.backoff_initial, s.backoff_max),
            lazy=self._lazy,
            stable_after=STABLE_CONNECTION,
        )
        wait = 0.0
        if s.warm_up:
            self._demand.set()
        async with trio.open_nursery() as nursery:
            while True:
                if wait > 0:
                    log.info("model %s: reconnecting in %.1f s", s.model, wait)
                    await trio.sleep(wait)
                    wait = 0.0
                if self._conn is None and not self._demand.is_set():
                    self.state = LinkState.IDLE  # closed by choice: nothing to say
                    await self._demand.wait()
                if self._conn is None and self.state not in (
                    LinkState.STALLED,
                    LinkState.AUTH_FAILED,
                ):
                    self.state = LinkState.CONNECTING
                try:
                    conn = await self._open(nursery)
                except ModelNotOffered as e:
                    self._refuse(str(e))
                    continue
                except RateLimited as e:
                    wait = self._retry(plan.failed(Failure.RATE_LIMITED, e.retry_after), str(e))
                except CredentialsRefused as e:
                    wait = self._retry(plan.failed(Failure.CREDENTIALS), str(e))
                    self._credentials_refused = self.last_error
                    self._wake()
                except AuthError as e:
                    wait = self._retry(plan.failed(Failure.AUTH), str(e))
                except LinkError as e:  # unreachable, or a bad answer: already says which
                    wait = self._retry(plan.failed(Failure.UNREACHABLE), str(e))
                except _CONNECT_ERRORS as e:
                    wait = self._retry(plan.failed(Failure.UNREACHABLE), self._describe(e))
                except Exception as e:  # a supervisor: a bug here must not end the daemon
                    log.exception("model %s: unexpected error while connecting", s.model)
                    failure = f"{type(e).__name__}: {e}"
                    wait = self._retry(plan.failed(Failure.UNREACHABLE), failure)
                else:
                    self._credentials_refused = ""
                    old, self._restart_now = self._conn, False
                    self._set_conn(conn)
                    if old is not None:
                        old.retire_when_idle()  # a renewal: the old one finishes its replies
                    if await self._serve_until_renewal(conn):
                        self.renewals += 1
                        continue
                    closed = conn.reason
                    step = plan.closed(
                        closed,
                        lived=trio.current_time() - conn.opened,
                        quiet=conn.quiet,
                        restarted=self._restart_now,
                    )
                    if step is AfterClose.REOPEN:
                        continue
                    if step is AfterClose.IDLE:
                        # The next request opens a new one (or one waiting already: it asked
                        # while this one was closing).
                        self._demand = trio.Event()
                        if self._waiting:
                            self._demand.set()
                        self.state = LinkState.IDLE
                        log.info("model %s: connection closed while idle", s.model)
                        continue
                    if step is AfterClose.AFTER_STALL:
                        # Its replies are asked again at once (a failure to reach it again
                        # backs off).
                        self._after_stall = True
                        continue
                    self._note_failure(LinkState.RECONNECTING, f"connection closed ({closed.text})")
                    wait = plan.retry_wait()

    @property
    def _lazy(self) -> bool:
        """Reconnect only on demand (else a dropped connection is reopened at once)."""
        return self.settings.idle_close > 0 or not self.settings.warm_up

    def _refuse(self, message: str) -> None:
        """The service offers no websocket for this model: waiting requests fail now, and the
        link waits for the next request (the kept auth answer is asked again: no auth call)."""
        self._note_failure(LinkState.AUTH_FAILED, message)
        self._refused += 1
        self._refusal = message
        self._demand = trio.Event()
        self._wake()

    async def _serve_until_renewal(self, conn: _Connection) -> bool:
        """Wait while `conn` serves; True when it is time to open its successor."""
        s = self.settings
        renew_at = renewal_time(
            conn.opened,
            max_age=s.max_age,
            renew_margin=s.renew_margin,
            url_left=self.urls.expires_in(),  # the service's own word about its URL
            now=trio.current_time(),
            min_lifetime=MIN_RENEWAL_LIFETIME,
        )
        with trio.move_on_at(renew_at):
            await conn.closed.wait()
            return False
        if self._lazy:
            # A link that closes when idle renews only once it is asked for something:
            # renewing an idle one would restart its idle clock, so it would never close.
            while not conn.book.pending:
                if await _closed_or_poked(conn):
                    return False
        log.info("model %s: renewing the connection before it expires", s.model)
        return True

    # ---- internals ----------------------------------------------------------------------

    async def _wait_changed(self) -> None:
        await self._conn_changed.wait()

    def _set_conn(self, conn: _Connection | None) -> None:
        self._conn = conn
        self._wake()

    def _wake(self) -> None:
        """Requests waiting for a connection look again."""
        self._conn_changed.set()
        self._conn_changed = trio.Event()

    def _describe(self, error: BaseException) -> str:
        if isinstance(error, (trio.TooSlowError, ConnectionTimeout)):
            return f"no answer within {self.settings.connect_timeout:g} s (api.connect_timeout)"
        if isinstance(error, HandshakeError) and not str(error):
            cause = error.__cause__ or error.__context__  # e.g. the refused TCP connection
            if cause is not None:
                return f"cannot reach the websocket: {type(cause).__name__}: {redact(str(cause))}"
        return f"{type(error).__name__}: {error}"

    def _retry(self, retry: Retry, message: str) -> float:
        """Report a failed attempt as `retry` says; returns its wait."""
        self._note_failure(retry.state, message)
        return retry.wait

    def _note_failure(self, state: LinkState, message: str) -> None:
        """Log a failure once at warning; its repeats (each retry) only at debug."""
        message = redact(message)
        repeated = message == self.last_error
        self.state, self.last_error = state, message
        if self._after_stall:  # the service stalled, and the first try to reach it again failed
            self._after_stall, self._unreachable_after_stall = False, True
            self._wake()
        log.log(
            logging.DEBUG if repeated else logging.WARNING,
            "model %s: %s",
            self.settings.model,
            message,
        )

    async def _open(self, nursery: trio.Nursery) -> _Connection:
        """Open a websocket served by a task in `nursery`, with the kept URL when there is one
        (a refused one is forgotten and the auth asked again, once). Raises ModelNotOffered,
        AuthError, LinkError or one of _CONNECT_ERRORS when that fails."""
        for attempt in range(2):
            auths = self.urls.auths
            url = await self.urls.url_for(self.settings.model)
            try:
                # Our own deadline too: trio-websocket's connect_timeout does not end the wait
                # for a peer that accepted TCP and never answers the handshake (its reader task
                # keeps the opening nursery alive); a task is cancelled with start()'s caller
                # until it has started.
                with trio.fail_after(self.settings.connect_timeout):
                    return await nursery.start(self._connection_task, url)
            except BaseExceptionGroup as group:
                error = _single(group)
            except _CONNECT_ERRORS as e:
                error = e
            fresh = self.urls.auths != auths
            if fresh or attempt or not _refused_token(error):
                raise error
            log.info(
                "model %s: the kept websocket URL was refused: authenticating again",
                self.settings.model,
            )
            self.urls.forget()
        raise AssertionError("unreachable")

    async def _connection_task(
        self, url: str, *, task_status: trio.TaskStatus[_Connection] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Open the websocket, then route its frames until it closes; never raises once
        started (the supervisor learns why from `conn.reason`)."""
        with contextlib.suppress(DisconnectionTimeout):  # a peer that never closes: it is gone
            async with open_websocket_url(
                url,
                connect_timeout=self.settings.connect_timeout,
                disconnect_timeout=2,
                max_message_size=2**22,
            ) as ws:
                conn = _Connection(ws, ConnectionWatch(self.settings, trio.current_time()))
                self.connections += 1
                self.state = LinkState.CONNECTED
                self.last_error = ""
                self._after_stall = self._unreachable_after_stall = False
                log.info("model %s: connected to %s", self.settings.model, redact(url))
                task_status.started(conn)
                await self._serve(conn)

    async def _serve(self, conn: _Connection) -> None:
        """Read and watch `conn` until it closes; then fail what is still pending."""
        try:
            with conn.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._watch, conn, nursery)
                    conn.closed_by(await self._read(conn))
                    nursery.cancel_scope.cancel()
        except* (OSError, trio.BrokenResourceError) as group:
            first = group.exceptions[0]
            conn.closed_by(CloseReason(CloseKind.BROKEN, f"{type(first).__name__}: {first}"))
        finally:
            if self._conn is conn:
                self._set_conn(None)
            conn.quiet = not conn.book.pending
            closed = conn.reason
            if closed.given_up:
                error = LinkError(closed.text)
            else:
                error = LinkError(f"the connection to the TTS service was lost ({closed.text})")
            for reply in conn.book.pending:
                reply._fail(error, retriable=True)
            conn.book.pending.clear()
            conn.closed.set()

    async def _give_up(self, conn: _Connection, reason: CloseReason) -> None:
        """Close `conn` at once, without the polite close handshake a dead or stalled peer would
        not answer; its pending replies fail (retriable) with `reason`."""
        assert reason.given_up
        conn.reason = reason
        await trio.aclose_forcefully(conn.ws)
        conn.scope.cancel()

    async def _watch(self, conn: _Connection, nursery: trio.Nursery) -> None:
        """Sleep until the watch says something is due on `conn` (woken early by progress),
        then do it: fail over a stalled connection, give up on one whose pong did not come,
        close an idle one, or ping."""
        while True:
            now = trio.current_time()
            check = conn.watch.check(conn.book.pending, conn.reading_since, now)
            if check.due is Due.NOTHING:
                with trio.move_on_at(check.at):
                    await conn.progress.wait()
                continue
            if check.due is Due.PING:
                conn.watch.pinged(now)
                nursery.start_soon(self._ping, conn)
                continue
            reason = check.reason
            assert reason is not None  # every other due closes the connection
            if check.due is Due.IDLE:
                # No await from here on: a request either sees the connection gone or in use.
                log.info("model %s: closing the idle connection", self.settings.model)
                conn.reason = reason
                if self._conn is conn:
                    self._set_conn(None)
                conn.scope.cancel()
                return
            if check.due is Due.STALLED:
                self.stalls += 1
                if conn is self._conn:  # not one being retired: its successor is already up
                    self.state, self.last_error = LinkState.STALLED, reason.text
                log.warning("model %s: %s: reconnecting", self.settings.model, reason.text)
            else:
                log.warning("model %s: %s", self.settings.model, reason.text)
            await self._give_up(conn, reason)
            return

    @staticmethod
    async def _ping(conn: _Connection) -> None:
        with contextlib.suppress(ConnectionClosed):  # the reader sees it and reports it
            await conn.ws.ping()
        conn.watch.ponged(trio.current_time())
        conn.wake()

    async def _read(self, conn: _Connection) -> CloseReason:
        """Route frames until the connection closes; returns why it closed."""
        while True:
            conn.reading_since = trio.current_time()
            conn.poke()
            try:
                message = await conn.ws.get_message()
            except ConnectionClosed as e:
                if e.reason is None:
                    text = "closed with no reason given"
                else:
                    text = f"code {e.reason.code}, {e.reason.reason or 'no reason given'}"
                return CloseReason(CloseKind.BY_SERVICE, text)
            finally:
                conn.reading_since = None
            if isinstance(message, bytes):
                if (current := conn.book.current) is None:
                    log.warning("audio frame outside any request: dropped (%d bytes)", len(message))
                else:
                    await current._deliver(message)
            else:
                self._on_text(conn, message)

    def _on_text(self, conn: _Connection, message: str) -> None:
        try:
            frame = parse_frame(message)
        except BadJsonError as e:
            log.warning("ignoring a text frame (%d chars): %s", len(message), e.reason)
            return
        if isinstance(frame, OtherFrame):
            log.debug("ignoring a frame of type %s", redact(str(frame.type))[:40])
            return
        # The book changes here; the reader pokes the watcher as it waits again.
        outcome = conn.book.on_frame(frame, trio.current_time())
        if outcome.action is Action.IGNORE:
            log.warning("%s (id %s): ignored", outcome.message, _shown(frame.request_id))
            return
        if (previous := outcome.abandoned) is not None:
            previous._fail(
                LinkError(f"the TTS service never ended reply {previous.request_id}"),
                retriable=False,
            )
        reply = outcome.reply
        if outcome.action is Action.END and reply is not None:
            reply._end()
        elif outcome.action is Action.FAIL and reply is not None:
            reply._fail(
                LinkError(f"the service said: {redact(outcome.message)[:300]}"), retriable=False
            )
        if outcome.retire:
            conn.scope.cancel()


async def _closed_or_poked(conn: _Connection) -> bool:
    """Wait until `conn` closes (True) or something changes on it (False)."""
    poked = conn.progress
    async with trio.open_nursery() as nursery:

        async def wait(event: trio.Event) -> None:
            await event.wait()
            nursery.cancel_scope.cancel()

        nursery.start_soon(wait, conn.closed)
        nursery.start_soon(wait, poked)
    return conn.closed.is_set()


def _shown(request_id: Any) -> str:
    return "null" if request_id is None else repr(redact(str(request_id))[:40])


def _refused_token(error: BaseException) -> bool:
    """The websocket handshake was refused with an HTTP 4xx: the kept URL is no longer good."""
    status = getattr(error, "status_code", None)
    return isinstance(error, HandshakeError) and isinstance(status, int) and 400 <= status < 500


_CONNECT_ERRORS = (HandshakeError, ConnectionClosed, OSError, httpx.HTTPError, trio.TooSlowError)


def _single(group: BaseExceptionGroup) -> BaseException:
    """The one expected connection error inside trio's exception groups, else the group."""
    found = leaves(group)
    expected = [e for e in found if isinstance(e, (LinkError, *_CONNECT_ERRORS))]
    return expected[0] if len(expected) == len(found) and expected else group


def url_cache(http: httpx.AsyncClient, settings: LinkSettings) -> UrlCache:
    """The kept auth answer for links with these settings (a pool shares one)."""
    return UrlCache(
        http,
        settings.base_url,
        settings.api_key,
        settings.user_id,
        timeout=settings.connect_timeout,
        lifetime=settings.max_age,
        margin=settings.renew_margin,
    )


class LinkPool:
    """One Link per model, started on first use inside the pool's own nursery; all of them
    share one UrlCache (one auth answer names every model's URL)."""

    def __init__(self, base: LinkSettings, http: httpx.AsyncClient) -> None:
        self._base = base
        self._http = http
        self._links: dict[str, Link] = {}
        self._nursery: trio.Nursery | None = None
        self.urls = url_cache(http, base)  # one auth answer names every model's URL

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await self._start(self._base.model)
            task_status.started()
            await trio.sleep_forever()

    async def _start(self, model: str) -> Link:
        assert self._nursery is not None
        link = Link(replace(self._base, model=model), self._http, self.urls)
        self._links[model] = link
        await self._nursery.start(link.run)
        return link

    async def get(self, model: str | None) -> Link:
        """The model's link, started on first use. Raises LinkError past MAX_MODELS: any
        name is accepted (the service's answer decides), so clients must not grow the pool
        without bound."""
        model = model or self._base.model
        if (link := self._links.get(model)) is not None:
            return link
        if len(self._links) >= MAX_MODELS:
            raise LinkError(f"too many different models asked for (at most {MAX_MODELS})")
        return await self._start(model)

    def status(self) -> list[dict[str, Any]]:
        return [link.status() for link in self._links.values()]

    def health(self) -> tuple[LinkHealth, ...]:
        return tuple(link.health() for link in self._links.values())
