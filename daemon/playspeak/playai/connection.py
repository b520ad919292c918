"""One connection's decisions, I/O-free: its book of pending replies, what each frame from
the service does to them (ConnectionBook), and when its watcher must look again and what is
then due (ConnectionWatch: a stalled reply, an idle close, a ping, a missing pong). Times are
passed in; link.py only applies the outcomes, sleeps until the instant named, and acts.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Generic, Protocol, TypeVar

from playspeak.playai.linkstate import CloseKind, CloseReason
from playspeak.playai.wire import Action, End, ErrorFrame, Start, failure_key, route

FAILED_KEPT = 64  # failed replies remembered until their end (a service may never send one)


# ---- the book: which reply a frame is for, and what it does --------------------------------


class BookedReply(Protocol):
    """What the book reads and keeps of a pending reply (link.Reply)."""

    request_id: str
    started: bool  # its start frame has come
    echoed: bool  # its start frame named its id (False: the service sends null ids)
    head_since: float | None  # when it became the oldest pending


B = TypeVar("B", bound=BookedReply)


@dataclass(frozen=True)
class Outcome(Generic[B]):
    """What one frame means for the connection, for the link to apply. Action.START: `reply`
    streams from now on; END: it is complete; FAIL: it failed, the service said `message`;
    SETTLE: nothing to do (the end or error of a reply failed already); IGNORE: log `message`
    as a warning."""

    action: Action
    reply: B | None = None
    # the reply that was streaming when another started: its end never came (part of it may
    # have been played: it fails, not retriable)
    abandoned: B | None = None
    message: str = ""
    retire: bool = False  # the connection was retiring and now has nothing pending: close it


class ConnectionBook(Generic[B]):
    """One connection's pending replies in request order, the one streaming (`current`), and
    the replies the service failed whose end may still come (their `failure_key`s)."""

    def __init__(self) -> None:
        self.pending: deque[B] = deque()
        self.current: B | None = None  # the reply whose start has arrived
        self.failed: deque[str | None] = deque(maxlen=FAILED_KEPT)
        self.retiring = False  # replaced by a newer connection: closes once nothing is pending

    def add(self, reply: B, now: float) -> None:
        self.pending.append(reply)
        if reply is self.pending[0]:
            reply.head_since = now

    def remove(self, reply: B, now: float) -> None:
        if reply in self.pending:
            self.pending.remove(reply)
        if self.current is reply:
            self.current = None
        if self.pending and self.pending[0].head_since is None:
            self.pending[0].head_since = now

    def on_frame(self, frame: Start | End | ErrorFrame, now: float) -> Outcome[B]:
        """Book what `frame` does (wire.route's rules) and say what the link must do."""
        step = route(frame, self.pending, self.current, self.failed)
        if step.action is Action.IGNORE:
            return Outcome(Action.IGNORE, message=step.message)
        if step.action is Action.SETTLE:
            key = failure_key(frame.request_id)
            if isinstance(frame, End) and key in self.failed:
                self.failed.remove(key)  # its end came: nothing more is expected of it
            return Outcome(Action.SETTLE)
        reply = step.reply
        assert reply is not None  # every other action names its reply
        if step.abandoned is not None:
            self.remove(step.abandoned, now)
        if step.action is Action.START:
            reply.started, reply.echoed = True, frame.request_id is not None
            self.current = reply
            return Outcome(Action.START, reply, step.abandoned)
        self.remove(reply, now)
        if step.action is Action.FAIL and not isinstance(frame, End):
            self.failed.append(failure_key(frame.request_id))  # its end may still come
        return Outcome(
            step.action,
            reply,
            step.abandoned,
            step.message,
            retire=self.retiring and not self.pending,
        )


# ---- the watch: stalls, idle close, heartbeat ----------------------------------------------


class WatchSettings(Protocol):
    """What the watch reads of the link's settings (LinkSettings has them)."""

    @property
    def first_audio_timeout(self) -> float: ...  # a reply with no audio this long fails over
    @property
    def stall_timeout(self) -> float: ...  # a reply whose audio stops this long fails over
    @property
    def idle_close(self) -> float: ...  # close after this long with nothing asked (0: never)
    @property
    def heartbeat(self) -> float: ...  # ping an idle connection this often; no pong as long


class Progress(Protocol):
    """What the watch reads of a pending reply."""

    @property
    def bytes_received(self) -> int: ...
    @property
    def head_since(self) -> float | None: ...  # when it became the oldest pending


class Due(Enum):
    NOTHING = "nothing"  # look again at `Check.at`, or sooner on progress
    STALLED = "stalled"  # the reply at the head is overdue: give up on the connection
    NO_PONG = "no pong"  # the last ping was not answered in time: give up on it
    IDLE = "idle"  # nothing was asked of it for idle_close seconds: close it
    PING = "ping"  # ping it (then tell the watch: pinged, ponged)


@dataclass(frozen=True)
class Check:
    at: float  # when to look again (inf: on progress only); if due, when it fell due
    due: Due = Due.NOTHING
    reason: CloseReason | None = None  # STALLED, NO_PONG, IDLE: why the connection closes


class ConnectionWatch:
    """The liveness and idle decisions of one connection (link.py's docstring), fed what
    happened on it: `progressed` (a reply added or ended, the reader waiting again or busy),
    `pinged` and `ponged`. The heartbeat never pings while replies are pending: back-pressure
    may then rightly delay the pong (the stall deadlines look after those)."""

    def __init__(self, settings: WatchSettings, now: float) -> None:
        self.settings = settings
        self._changed = now  # the last progress: the idle clock starts there
        self._ping_at = now + settings.heartbeat
        self._pinged: float | None = None  # a ping awaits its pong since

    def progressed(self, now: float) -> None:
        self._changed = now

    def pinged(self, now: float) -> None:
        self._pinged = now

    def ponged(self, now: float) -> None:
        """The ping's pong came (or the connection closed under it: the reader reports that)."""
        self._pinged = None
        self._ping_at = now + self.settings.heartbeat

    def check(self, pending: Sequence[Progress], reading_since: float | None, now: float) -> Check:
        """What is due at `now`, given the pending replies in request order and since when
        the reader waits for the service (None: it waits for our consumer, which is not the
        service's delay). A ping that falls due while replies are pending is skipped: the next
        is a heartbeat later."""
        candidates = [self._stall(pending, reading_since), self._no_pong(), self._idle(pending)]
        if self._pinged is None:
            if pending and self._ping_at <= now:
                self._ping_at = now + self.settings.heartbeat
            candidates.append(Check(self._ping_at, Due.NOTHING if pending else Due.PING))
        first = min(candidates, key=lambda c: c.at)  # on a tie, the first listed
        return first if first.at <= now else Check(first.at)

    def _stall(self, pending: Sequence[Progress], reading_since: float | None) -> Check:
        s = self.settings
        if not pending or reading_since is None:
            return Check(math.inf)
        head = pending[0]
        if head.bytes_received == 0:
            since = head.head_since if head.head_since is not None else reading_since
            why = f"no audio from the TTS service within {s.first_audio_timeout:g} s"
            at = since + s.first_audio_timeout
        else:
            why = f"the TTS service stopped sending mid-reply (nothing for {s.stall_timeout:g} s)"
            at = reading_since + s.stall_timeout
        return Check(at, Due.STALLED, CloseReason(CloseKind.STALLED, why))

    def _no_pong(self) -> Check:
        if self._pinged is None:
            return Check(math.inf)
        every = self.settings.heartbeat
        reason = CloseReason(CloseKind.NO_PONG, f"no pong within {every:g} s")
        return Check(self._pinged + every, Due.NO_PONG, reason)

    def _idle(self, pending: Sequence[Progress]) -> Check:
        if pending or self.settings.idle_close <= 0:
            return Check(math.inf)
        reason = CloseReason(CloseKind.IDLE, "idle")
        return Check(self._changed + self.settings.idle_close, Due.IDLE, reason)
