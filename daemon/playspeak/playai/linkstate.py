"""The link's states and why a connection closed, as types. I/O-free.

`LinkState`'s values are what `status` reports for each link ("state"): a contract
(docs/protocol.md), kept by the StrEnum's values; code compares the members.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, StrEnum


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
