"""What the daemon tells its clients, as types, free of I/O: utterance events, daemon events and
command replies. Each front end encodes them for its own wire (control/protocol.py as JSON
lines, ssip/protocol.py as 7xx notifications); nothing here knows a wire format.

Field order is the order a wire shows them in: `id`, then `t`, then what the kind adds.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar


def timestamp() -> float:
    """The `t` of an event: seconds since the epoch, to the millisecond."""
    return round(time.time(), 3)


# ---- an utterance's events -----------------------------------------------------------------


@dataclass(frozen=True)
class UtteranceEvent:
    """Something that happened to one utterance; `name` is the event's name on every wire."""

    id: str
    t: float
    # Why the fallback voice speaks it (a contract: "fallback_reason"); "" while it does not.
    # Last on the wire, and left out when empty.
    fallback_reason: str = field(default="", kw_only=True)
    # What the listener should know of the voice that speaks it ("warning"), e.g. that it is a
    # generated murmur because espeak-ng is missing; left out when empty.
    warning: str = field(default="", kw_only=True)
    name: ClassVar[str] = ""
    ends: ClassVar[bool] = False  # finished, cancelled or failed: its one ending


@dataclass(frozen=True)
class Queued(UtteranceEvent):
    position: int  # 1 for the next to speak; 0 when its priority dropped it at once
    name: ClassVar[str] = "queued"


@dataclass(frozen=True)
class Started(UtteranceEvent):
    """Its first sample left the sound card."""

    source: str  # "service", "cache" or "fallback" (a contract)
    name: ClassVar[str] = "started"


@dataclass(frozen=True)
class Paused(UtteranceEvent):
    name: ClassVar[str] = "paused"


@dataclass(frozen=True)
class Resumed(UtteranceEvent):
    name: ClassVar[str] = "resumed"


@dataclass(frozen=True)
class Mark(UtteranceEvent):
    """The audio at an index mark is heard. `mark` is the mark's name: "name" on the wire
    (`name` is the kind of event here)."""

    mark: str
    name: ClassVar[str] = "mark"


@dataclass(frozen=True)
class Finished(UtteranceEvent):
    """Its last sample left the sound card."""

    source: str
    name: ClassVar[str] = "finished"
    ends: ClassVar[bool] = True


@dataclass(frozen=True)
class Cancelled(UtteranceEvent):
    reason: str
    name: ClassVar[str] = "cancelled"
    ends: ClassVar[bool] = True


@dataclass(frozen=True)
class Failed(UtteranceEvent):
    reason: str
    name: ClassVar[str] = "failed"
    ends: ClassVar[bool] = True


UTTERANCE_EVENTS: tuple[type[UtteranceEvent], ...] = (
    Queued,
    Started,
    Paused,
    Resumed,
    Mark,
    Finished,
    Cancelled,
    Failed,
)
ENDINGS = tuple(kind.name for kind in UTTERANCE_EVENTS if kind.ends)


# ---- the daemon's own events (to subscribers) ------------------------------------------------


@dataclass(frozen=True)
class DeviceChanged:
    """The sound device went away ("lost", with why) or is back ("open")."""

    t: float
    state: str
    error: str
    name: ClassVar[str] = "device"


# ---- replies to a client's commands --------------------------------------------------------


@dataclass(frozen=True)
class Ok:
    """A command was done: its name, the client's line number and what the command reports
    (`{"id": …}` for speak, `{"cancelled": […]}` for cancel, …)."""

    cmd: str
    line: int
    fields: Mapping[str, Any] = field(default_factory=dict)
    name: ClassVar[str] = "ok"


@dataclass(frozen=True)
class Error:
    """A line, a message or a client was refused: `error` says what was wrong; `line` is the
    client's line number (None: not about one line), `topic` the MQTT topic it came on."""

    error: str
    line: int | None = None
    topic: str | None = None
    name: ClassVar[str] = "error"


@dataclass(frozen=True)
class Warmed:
    """A phrase `cache warm` asked for was fetched ("stored", "cached", …) or not ("failed",
    with a reason)."""

    text: str
    result: str
    reason: str = ""
    name: ClassVar[str] = "warmed"


DaemonEvent = DeviceChanged
Reply = Ok | Error | Warmed
Message = UtteranceEvent | DeviceChanged | Ok | Error | Warmed
