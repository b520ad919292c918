"""The door's rules, free of I/O: which connection makes room for a newcomer, when a connection
has been idle or its line unfinished too long, and which connections hold too much unfinished
input. Times are seconds on any monotonic clock, passed in by the caller."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from playspeak.config import ControlConfig


@dataclass(frozen=True)
class Limits:
    """One door's limits (each door counts its own clients). 0 for a timeout: none."""

    max_clients: int = 256
    uid_share: int = 64  # a uid beyond this many gives way to newcomers of other uids
    idle_timeout: float = 300.0  # no line in or out, nothing pending, not subscribed
    line_timeout: float = 15.0  # from the first byte of a line (or SPEAK text) to its end
    max_pending_bytes: int = 2 << 20  # unfinished lines and texts of all clients together

    @classmethod
    def from_config(cls, control: ControlConfig) -> Limits:
        return cls(
            max_clients=control.max_clients,
            uid_share=min(control.uid_share, control.max_clients),
            idle_timeout=control.idle_timeout,
            line_timeout=control.line_timeout,
            max_pending_bytes=control.max_pending_bytes,
        )


class Occupant(Protocol):
    """What the rules need to know of a connection."""

    @property
    def uid(self) -> int | None: ...
    @property
    def last_active(self) -> float: ...
    def busy(self) -> bool: ...


def too_many(limits: Limits) -> str:
    return f"too many clients (limit {limits.max_clients})"


T = TypeVar("T", bound=Occupant)
K = TypeVar("K")


def make_room(occupants: Iterable[T], uid: int | None, limits: Limits) -> T | str | None:
    """For a newcomer of `uid` at a door with `occupants`: None when there is room;
    else the connection that gives way, or why the newcomer is refused.

    A full door takes a newcomer of a uid below its share from the uid holding the most beyond
    its share (its least recently active connection, idle ones first). Failing that, the
    connection idle the longest with nothing in flight (nothing pending, not subscribed) gives
    way: one of the newcomer's own uid when that uid is at its share (a uid cannot take others'
    places), anyone's otherwise; so a uid that leaks connections locks out no new client of its
    own. Failing that (all busy), the newcomer is refused."""
    present = list(occupants)
    if len(present) < limits.max_clients:
        return None
    counts = Counter(o.uid for o in present)
    at_share = counts[uid] >= limits.uid_share
    hog, held = max(counts.items(), key=lambda item: item[1])
    if not at_share and held > limits.uid_share:
        return min((o for o in present if o.uid == hog), key=lambda o: (o.busy(), o.last_active))
    idle = [o for o in present if (o.uid == uid or not at_share) and not o.busy()]
    if idle:
        return min(idle, key=lambda o: o.last_active)
    return too_many(limits)


@dataclass(frozen=True)
class Expiry:
    """When a connection is next due to be looked at, and why it would be closed then."""

    at: float
    reason: str


def expiry(
    now: float, last_active: float, line_started: float | None, busy: bool, limits: Limits
) -> Expiry | None:
    """The first timeout a connection meets: its unfinished line's, or (when it is not busy)
    its idleness's. None: none is set. Past-due (`at <= now`) means close it now."""
    candidates = []
    if line_started is not None and limits.line_timeout > 0:
        at = line_started + limits.line_timeout
        candidates.append(Expiry(at, f"a line unfinished after {limits.line_timeout:g} s"))
    if limits.idle_timeout > 0:
        # A busy one (speech pending, subscribed) is looked at again a whole period later.
        at = (now if busy else last_active) + limits.idle_timeout
        reason = "" if busy else f"idle for {limits.idle_timeout:g} s"
        candidates.append(Expiry(at, reason))
    if not candidates:
        return None
    return min(candidates, key=lambda e: e.at)


class Budget(Generic[K]):
    """Unfinished input (partial lines, SPEAK texts before their dot) held for each connection,
    bounded in total: beyond it, the largest holders go."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held: dict[K, int] = {}
        self.total = 0

    def update(self, key: K, size: int) -> list[tuple[K, int]]:
        """`key` now holds `size` bytes; returns the holders to drop, with what they hold
        (largest first), to bring the total back within the limit."""
        self.total += size - self.held.pop(key, 0)
        if size:
            self.held[key] = size
        over: list[tuple[K, int]] = []
        total = self.total
        for holder, held in sorted(self.held.items(), key=lambda kv: -kv[1]):
            if total <= self.limit:
                break
            over.append((holder, held))
            total -= held
        return over

    def release(self, key: K) -> None:
        self.total -= self.held.pop(key, 0)
