"""The link's states and why a connection closed, as types. I/O-free.

`LinkState`'s values are what `status` reports for each link ("state"): a contract
(docs/protocol.md), kept by the StrEnum's values; code compares the members.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Protocol


class LinkState(StrEnum):
    STARTING = "starting"  # warming up: the first connection is being opened
    IDLE = "idle"  # no connection, by choice: the next request opens one
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"  # the last attempt (or connection) failed; retrying
    STALLED = "stalled"  # a reply was overdue: failed over, not connected again yet
    AUTH_FAILED = "auth-failed"  # the auth call (or the model's URL) was refused; retrying


# Up, as far as a request is concerned: connected, or closed by choice (reopened on demand).
UP = frozenset({LinkState.CONNECTED, LinkState.IDLE})


class CloseKind(Enum):
    BY_US = "by us"  # retired after a renewal, restarted, or the daemon stops
    BY_SERVICE = "by the service"  # its close frame, or the end of the stream
    BROKEN = "broken"  # the transport failed (OSError)
    IDLE = "idle"  # we closed it: nothing was asked of it for idle_close seconds
    NO_PONG = "no pong"  # we gave up on it: the heartbeat was not answered
    STALLED = "stalled"  # we gave up on it: the reply at its head was overdue


@dataclass(frozen=True)
class CloseReason:
    kind: CloseKind
    text: str  # what the logs and the replies' errors say

    @property
    def given_up(self) -> bool:
        """We gave up on a peer that no longer answered: a failure, even with nothing pending."""
        return self.kind in (CloseKind.NO_PONG, CloseKind.STALLED)

    @property
    def decided_by_us(self) -> bool:
        """Closed on a decision of ours (idle, or given up): a transport error while it closes
        does not change why."""
        return self.given_up or self.kind is CloseKind.IDLE


CLOSED_BY_US = CloseReason(CloseKind.BY_US, "closed by us")


# ---- the supervisor's decisions ------------------------------------------------------------


class Failure(Enum):
    """Why an attempt to connect failed, as far as what to do next is concerned."""

    RATE_LIMITED = "rate limited"  # a 429: wait at least its Retry-After
    CREDENTIALS = "credentials refused"  # 401/403 from the auth call
    AUTH = "auth failed"  # any other auth trouble (the model's URL missing, a bad answer)
    UNREACHABLE = "unreachable"  # connection errors, timeouts, a bug while connecting


class AfterClose(Enum):
    """What the supervisor does once a connection has closed."""

    REOPEN = "reopen"  # at once: it was dropped on purpose (an unwanted reply)
    IDLE = "idle"  # wait for the next request: it closed with nothing asked
    AFTER_STALL = "after stall"  # at once: the stall timeout already spaced this reconnect
    RETRY = "retry"  # a failure: reconnect after the backoff (retry_wait)


@dataclass(frozen=True)
class Retry:
    state: LinkState
    wait: float  # seconds before the next attempt


class Backoffs(Protocol):
    def next(self) -> float: ...
    def reset(self) -> None: ...


class Supervision:
    """The reconnect, backoff and idle decisions of Link.run, fed what happened and answering
    what to do; the link only moves bytes and timers. I/O-free: times are passed in.

    `lazy`: the link reconnects only on demand (idle_close, or no warm_up), so a connection
    that closed with nothing pending is not a failure."""

    def __init__(self, backoff: Backoffs, *, lazy: bool, stable_after: float) -> None:
        self.backoff = backoff
        self.lazy = lazy
        self.stable_after = stable_after  # a connection that lived this long resets the backoff

    def failed(self, failure: Failure, retry_after: float | None = None) -> Retry:
        """An attempt to connect failed: the state to report and the wait before the next."""
        state = (
            LinkState.AUTH_FAILED
            if failure in (Failure.CREDENTIALS, Failure.AUTH)
            else LinkState.RECONNECTING
        )
        wait = self.backoff.next()
        if failure is Failure.RATE_LIMITED:
            wait = max(wait, retry_after or 0.0)
        return Retry(state, wait)

    def closed(
        self, reason: CloseReason, *, lived: float, quiet: bool, restarted: bool
    ) -> AfterClose:
        """A connection that lived `lived` seconds closed for `reason`; `quiet`: no reply was
        pending; `restarted`: dropped on purpose to skip an unwanted reply."""
        if lived >= self.stable_after:
            self.backoff.reset()
        if restarted:
            return AfterClose.REOPEN
        # Closed with nothing asked (by us, or by the service's idle timeout): not a failure.
        # One we gave up on (no pong) is one, so that status tells.
        if reason.kind is CloseKind.IDLE or (self.lazy and quiet and not reason.given_up):
            return AfterClose.IDLE
        if reason.kind is CloseKind.STALLED:
            return AfterClose.AFTER_STALL
        return AfterClose.RETRY

    def retry_wait(self) -> float:
        """The wait before reconnecting after a connection failed (AfterClose.RETRY)."""
        return self.backoff.next()


def renewal_time(
    opened: float,
    *,
    max_age: float,
    renew_margin: float,
    url_left: float | None,
    now: float,
    min_lifetime: float,
) -> float:
    """When to open the successor of a connection opened at `opened`: `renew_margin` (at most
    a quarter of its life) before it reaches `max_age`, or before its URL expires
    (`url_left` seconds from `now`, the service's word) if sooner, but never on an expiry
    shorter than `min_lifetime` (each renewal costs an auth call)."""
    lifetime = max_age
    if url_left is not None:
        left = url_left + now - opened
        if left > 0:
            lifetime = min(lifetime, max(left, min_lifetime))
    return opened + lifetime - min(renew_margin, lifetime / 4)
