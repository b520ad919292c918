"""Utterances, the bounded speech queue, and the hub that sends their events to clients.

Free of front ends: events go out typed (events.py) to each client's Outbox."""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import trio

from playspeak.errors import PlayspeakError
from playspeak.events import (
    Cancelled,
    DaemonEvent,
    Failed,
    Finished,
    Mark,
    Message,
    Paused,
    Queued,
    Resumed,
    Started,
    UtteranceEvent,
    timestamp,
)
from playspeak.lifecycle import IllegalTransition, UtteranceState, advance
from playspeak.log import utterance_event
from playspeak.marks import Segment
from playspeak.priorities import rank


class QueueFull(PlayspeakError):
    """The speech queue is at its configured limit."""


class Outbox(Protocol):
    """Where a client's events go, typed: each front end encodes them for its wire. `send`
    never blocks (a client that does not read is dropped)."""

    def send(self, message: Message) -> None: ...


log = logging.getLogger(__name__)

_ids = itertools.count(1)
_arrivals = itertools.count(1)


def next_auto_id() -> str:
    """The next id of the form the daemon gives an utterance without one: u<n>."""
    return f"u{next(_ids)}"


@dataclass(eq=False)
class Utterance:
    text: str
    params: dict[str, Any]  # the snake_case command sent to the service, less request_id
    id: str = field(default_factory=next_auto_id)
    owner: Outbox | None = None
    model: str | None = None  # None: the configured model
    priority: str = "message"
    progress: bool = False  # the kept last message of a progress series
    chime: bool | None = None  # None: as configured for its priority
    cache: bool = True  # False: neither played from nor stored in the phrase cache
    seq: int = field(default_factory=lambda: next(_arrivals))  # arrival order
    gain: float = 1.0  # per-utterance volume, 0–1
    at: float | None = None  # Unix time its first sample is heard (schedule.py); None: at once
    state: UtteranceState = UtteranceState.NEW  # moved only by EventHub.emit (lifecycle.py)
    created: float = field(default_factory=time.time)
    attempts: int = 0
    fallback_reason: str = ""  # why the fallback voice speaks it ("": it does not)
    warning: str = ""  # what the listener should know of the voice that speaks it (events)
    # Its text cut at its index marks, each segment requested on its own (marks.py); ():
    # none, the text is one request.
    segments: tuple[Segment, ...] = ()
    done: trio.Event = field(default_factory=trio.Event)

    @property
    def output_format(self) -> str:
        return self.params.get("output_format", "mp3")

    @property
    def ended(self) -> bool:
        return self.state.ended

    @property
    def started(self) -> bool:
        """Told `started` and not ended (also while a pause holds it back in the queue)."""
        return self.state is UtteranceState.SPEAKING


class EventHub:
    """Sends each utterance's events to the client that asked and to every subscriber."""

    # An event its utterance's state does not allow (lifecycle.advance) is a bug: logged and
    # dropped, so that the utterance keeps its promise; the tests make it raise.
    strict: ClassVar[bool] = False

    def __init__(self) -> None:
        self.subscribers: set[Outbox] = set()
        self.counters: dict[str, int] = {"queued": 0, "finished": 0, "cancelled": 0, "failed": 0}
        self.live: dict[str, Utterance] = {}  # by id: those queued or speaking
        self.reserved: set[str] = set()  # ids given out but not yet queued (an SSIP block's)

    def taken(self, ident: str) -> bool:
        """True when an utterance queued or speaking (or one promised) has this id."""
        return ident in self.live or ident in self.reserved

    def fresh_id(self, make: Callable[[], str] = next_auto_id) -> str:
        """The next id from `make` that is not taken: ids the daemon gives never collide with
        the ids clients chose."""
        while self.taken(ident := make()):
            pass
        return ident

    def emit(self, utterance: Utterance, event: UtteranceEvent) -> None:
        """Move the utterance's state on (lifecycle.advance) and send `event` to its owner and
        every subscriber; a second ending of one utterance is dropped (exactly one per
        utterance), and so is an event out of order (logged). Once the
        fallback voice speaks it, every event carries why (`fallback_reason`); likewise its
        `warning`."""
        if utterance.fallback_reason and not event.fallback_reason:
            event = dataclasses.replace(event, fallback_reason=utterance.fallback_reason)
        if utterance.warning and not event.warning:
            event = dataclasses.replace(event, warning=utterance.warning)
        try:
            state = advance(utterance.state, event.name)
        except IllegalTransition as e:
            if self.strict:
                raise
            log.error("utterance %s: %s: not sent", utterance.id, e)
            return
        if state is None:
            return
        utterance.state = state
        if event.ends:
            utterance.done.set()
            if self.live.get(utterance.id) is utterance:
                del self.live[utterance.id]
        elif isinstance(event, Queued):
            self.live[utterance.id] = utterance
        if event.name in self.counters:
            self.counters[event.name] += 1
        utterance_event(utterance, event.name, vars(event))  # one log line per utterance at info
        if utterance.owner is not None:
            utterance.owner.send(event)
        for subscriber in list(self.subscribers):
            if subscriber is not utterance.owner:
                subscriber.send(event)

    # One typed call per kind of event: stamped with the utterance's id and the time now.

    def queued(self, utterance: Utterance, position: int) -> None:
        self.emit(utterance, Queued(utterance.id, timestamp(), position))

    def started(self, utterance: Utterance, source: str) -> None:
        self.emit(utterance, Started(utterance.id, timestamp(), source))

    def paused(self, utterance: Utterance) -> None:
        self.emit(utterance, Paused(utterance.id, timestamp()))

    def resumed(self, utterance: Utterance) -> None:
        self.emit(utterance, Resumed(utterance.id, timestamp()))

    def mark(self, utterance: Utterance, name: str) -> None:
        self.emit(utterance, Mark(utterance.id, timestamp(), name))

    def finished(self, utterance: Utterance, source: str) -> None:
        self.emit(utterance, Finished(utterance.id, timestamp(), source))

    def cancelled(self, utterance: Utterance, reason: str) -> None:
        self.emit(utterance, Cancelled(utterance.id, timestamp(), reason))

    def failed(self, utterance: Utterance, reason: str) -> None:
        self.emit(utterance, Failed(utterance.id, timestamp(), reason))

    def broadcast(self, event: DaemonEvent) -> None:
        """An event about the daemon itself (e.g. the audio device), to every subscriber."""
        for subscriber in list(self.subscribers):
            subscriber.send(event)


@runtime_checkable
class OneOfMany(Protocol):
    """An owner made for one message of a longer-lived client (an SSIP connection's)."""

    client: object


def client_of(u: Utterance) -> object:
    """Who an utterance counts against in the queue's per-client budget: its connection."""
    owner = u.owner
    return owner.client if isinstance(owner, OneOfMany) else owner


# What a waiting utterance holds beside its text (the object, its parameters and events), for
# the per-client budget: a burst of key names is bounded by memory, not by their number.
UTTERANCE_BYTES = 1024


def held_bytes(u: Utterance) -> int:
    return len(u.text.encode("utf-8", "surrogatepass")) + UTTERANCE_BYTES


class SpeechQueue:
    """Utterances waiting to be requested, by priority rank then arrival; bounded (QueueFull
    beyond `limit` utterances, or beyond `client_bytes` of one client's, as held_bytes counts)."""

    def __init__(self, limit: int, client_bytes: int = 0) -> None:
        self.limit = limit
        self.client_bytes = client_bytes  # 0: no per-client bound
        self._held: dict[int, int] = {}  # id(client_of(u)) -> bytes its waiting ones hold
        self._items: deque[Utterance] = deque()
        self._changed = trio.Event()
        # Utterances that wait without being taken (a paused SSIP client's); call `wake`
        # when what it picks changes.
        self.held: Callable[[Utterance], bool] = lambda u: False

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Utterance]:
        return iter(list(self._items))

    def put(self, utterance: Utterance, *, again: bool = False) -> None:
        """Insert in order. `again`: one already admitted, to be spoken again (no limit)."""
        client, size = id(client_of(utterance)), held_bytes(utterance)
        if not again:
            self.check_room()
            held = self._held.get(client, 0)
            if self.client_bytes and held + size > self.client_bytes:
                raise QueueFull(
                    f"this client's queue is full ({held} bytes waiting, limit {self.client_bytes})"
                )
        key = (rank(utterance), utterance.seq)
        index = next(
            (i for i, u in enumerate(self._items) if (rank(u), u.seq) > key), len(self._items)
        )
        self._items.insert(index, utterance)
        self._held[client] = self._held.get(client, 0) + size
        self._changed.set()

    def check_room(self) -> None:
        """QueueFull when `limit` utterances wait already."""
        if len(self._items) >= self.limit:
            raise QueueFull(f"queue full ({self.limit} utterances waiting)")

    def _taken(self, u: Utterance) -> None:
        self._items.remove(u)
        client = id(client_of(u))
        left = self._held.pop(client, 0) - held_bytes(u)
        if left > 0:
            self._held[client] = left

    async def get(self) -> Utterance:
        """The next utterance not held; waits while there is none. Cancellation loses
        nothing."""
        while (u := next((u for u in self._items if not self.held(u)), None)) is None:
            self._changed = trio.Event()
            await self._changed.wait()
        self._taken(u)
        return u

    def wake(self) -> None:
        """What `held` picks has changed: a waiting `get` looks again."""
        self._changed.set()

    def remove(self, predicate: Callable[[Utterance], bool]) -> list[Utterance]:
        """Take out and return every waiting utterance the predicate selects."""
        taken = [u for u in self._items if predicate(u)]
        for u in taken:
            self._taken(u)
        return taken
