"""A sound card and a service on trio's clock, for deterministic tests of the speaker.

`ClockedSink` stands where the player stands (speaker.AudioSink): PCM written to it waits in
a bounded buffer and is heard at `samplerate` frames per second of trio.current_time(), and
what was heard when is recorded. `ClockedSource` stands where sources.Sources stands
(speaker.ReplySource): each reply's audio arrives in chunks at a chosen pace by the same clock,
as raw PCM whose every sample names its utterance, so that `said` can tell from what was heard
which utterance was heard when. Under trio.testing.MockClock(autojump_threshold=0) a whole
conversation takes milliseconds and runs the same way every time. No threads, no I/O.

The sink's device has no latency and starts at once: a frame is heard when it is read, so
`frames_read` is what was heard, and `wait_played` returns at the instant a frame is heard.
The software volume is not applied (what is heard is what was written).
"""

from __future__ import annotations

import itertools
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import trio

from playspeak.errors import LinkError
from playspeak.events import Message, UtteranceEvent
from playspeak.health import DeviceHealth
from playspeak.playai.link import REPLY_BUFFER_CHUNKS
from playspeak.speaker import Speaker
from playspeak.speech import EventHub, Utterance

# A frame is due when trio's clock is within this share of a frame of its instant: the clock
# jumps to exactly the deadline a waiter computed, and float rounding must not miss it.
_DUE_EPSILON = 1e-6
_REFILL_DIVISOR = 4  # as the Player: a full buffer is topped up once a quarter is free


@dataclass
class Heard:
    """Frames heard back to back: from absolute position `start`, the first at trio time `at`."""

    at: float
    start: int
    pcm: np.ndarray  # (frames, channels) float32
    rate: int

    @property
    def end(self) -> int:
        return self.start + len(self.pcm)

    @property
    def until(self) -> float:
        """When the frame after the last would be heard."""
        return self.at + len(self.pcm) / self.rate


@dataclass(frozen=True)
class Drop:
    """Buffered frames [start, end) thrown away unheard at trio time `at` (cancel, skip_to,
    truncate)."""

    at: float
    how: str
    start: int
    end: int


class ClockedSink:
    """A player whose device reads `samplerate` frames a second of trio's clock from a buffer
    of `buffer_seconds`. Records every frame heard (`heard`), every drop (`drops`) and every
    underrun (`underruns`: trio times the device ran dry within an utterance, as the Player
    counts them: audio was written since the last wait for the very end of what was written).
    Its methods run on trio's thread; `play` and the waits are cancellable."""

    def __init__(
        self,
        samplerate: int = 24000,
        channels: int = 1,
        *,
        buffer_seconds: float = 2.0,
        prefill_seconds: float = 0.0,
    ) -> None:
        self.samplerate = samplerate
        self.channels = channels
        self.capacity = round(buffer_seconds * samplerate)
        self.prefill_seconds = prefill_seconds  # what the speaker's start margin allows for
        self.volume = 1.0
        self.losses = 0  # never lost
        self.paused = False
        self.prepared = 0  # prepare() calls
        self.heard: list[Heard] = []
        self.drops: list[Drop] = []
        self.underruns: list[float] = []
        self._buffer = np.zeros((0, channels), np.float32)  # frames [_read, _written)
        self._read = 0
        self._written = 0
        # Playing: since when, from which position the device reads (None: stopped, paused
        # or dry). Every change of state first brings the reading up to now (_advance).
        self._since: tuple[float, int] | None = None
        self._expecting = False  # an utterance is being written: running dry is an underrun
        self._dropped: list[tuple[int, int]] = []  # (after, upto]: waiters for these return
        self._changed = trio.Event()

    # ---- the sink's verbs (speaker.AudioSink) -----------------------------------------------

    @property
    def frames_written(self) -> int:
        return self._written

    @property
    def frames_read(self) -> int:
        self._advance()
        return self._read

    @property
    def health(self) -> DeviceHealth:
        return DeviceHealth()

    @property
    def stats(self) -> dict[str, Any]:
        return {
            "device": "clocked",
            "samplerate": self.samplerate,
            "underruns": len(self.underruns),
            "frames_played": self.frames_read,
        }

    async def play(self, pcm: np.ndarray) -> int:
        """Buffer `pcm`, waiting for room as the device reads; the position after its end."""
        await trio.lowlevel.checkpoint()
        samples = np.asarray(pcm, dtype=np.float32).reshape(len(pcm), self.channels)
        refill = max(1, self.capacity // _REFILL_DIVISOR)
        offset = 0
        while True:
            # as the Player: nothing more of a cancelled caller's audio follows a cut
            await trio.lowlevel.checkpoint_if_cancelled()
            self._advance()
            part = samples[offset : offset + self.capacity - (self._written - self._read)]
            if len(part):
                self._buffer = np.concatenate((self._buffer, part))
                self._written += len(part)
                offset += len(part)
                self._expecting = True
                if self._since is None and not self.paused:
                    self._since = (trio.current_time(), self._read)
                self._wake()
            if offset >= len(samples):
                return self._written
            await self._wait(self._written - self.capacity + refill)  # then a quarter is free

    async def wait_played(self, position: int) -> bool:
        """True once frame `position` was heard, or at once if it was dropped."""
        await trio.lowlevel.checkpoint()
        self._advance()
        if position == self._written:
            self._expecting = False  # the utterance's end: running dry after it is no underrun
        await self._wait(position)
        return True

    async def pad_until(self, when: float) -> int:
        """Silence until monotonic time `when`, heard on trio's clock from now; frames late."""
        self._advance()
        missing = round((when - time.monotonic()) * self.samplerate) - (self._written - self._read)
        if missing > 0:
            await self.play(np.zeros((missing, self.channels), np.float32))
        else:
            await trio.lowlevel.checkpoint()
        return max(0, -missing)

    async def wait_quiet(self) -> None:
        await trio.lowlevel.checkpoint()  # no latency: nothing dropped stays in a device

    async def wait_ready(self) -> None:
        await trio.lowlevel.checkpoint()

    def prepare(self) -> None:
        self.prepared += 1

    def cancel(self) -> int:
        self._advance()
        self._expecting = False
        return self._drop("cancel", self._read, self._written)

    def skip_to(self, position: int) -> int:
        self._advance()
        dropped = self._drop("skip_to", self._read, self._clamp(position))
        if self._read == self._written:
            self._expecting = False  # nothing left of the utterance being written
        return dropped

    def truncate(self, position: int) -> int:
        self._advance()
        end = self._clamp(position)
        dropped = self._written - end
        if dropped:
            self.drops.append(Drop(trio.current_time(), "truncate", end, self._written))
            self._buffer = self._buffer[: end - self._read]
            self._written = end
        # the positions from `end` on will be written again: no longer "dropped"
        self._dropped = [(after, min(upto, end)) for after, upto in self._dropped if after < end]
        self._expecting = False
        self._wake()
        return dropped

    def pause(self) -> None:
        self._advance()
        self.paused, self._since = True, None
        self._wake()

    def resume(self) -> None:
        self._advance()
        self.paused = False
        if self._written > self._read:
            self._since = (trio.current_time(), self._read)
        self._wake()

    # ---- the device -------------------------------------------------------------------------

    def _advance(self) -> None:
        """Hear what the device has read by now; note when it ran dry."""
        if self._since is None:
            return
        since, base = self._since
        due = base + math.floor((trio.current_time() - since) * self.samplerate + _DUE_EPSILON)
        upto = min(due, self._written)
        if upto > self._read:
            at = since + (self._read - base) / self.samplerate
            pcm, self._buffer = self._buffer[: upto - self._read], self._buffer[upto - self._read :]
            last = self.heard[-1] if self.heard else None
            if last is not None and last.end == self._read and math.isclose(last.until, at):
                last.pcm = np.concatenate((last.pcm, pcm))
            else:
                self.heard.append(Heard(at, self._read, pcm, self.samplerate))
            self._read = upto
        if due > self._written:  # the device wanted a frame that was not there
            self._since = None
            if self._expecting:
                self.underruns.append(since + (self._written - base) / self.samplerate)

    def _when(self, position: int) -> float:
        """The trio time frame `position` will have been heard by, as things stand."""
        if self._since is None or position > self._written:
            return math.inf
        since, base = self._since
        return since + (position - base) / self.samplerate

    async def _wait(self, position: int) -> None:
        """Until frame `position` was heard or dropped, looking again at each change."""
        while True:
            self._advance()
            if self._read >= position or self._was_dropped(position):
                return
            changed = self._changed
            with trio.move_on_at(self._when(position)):
                await changed.wait()

    def _drop(self, how: str, start: int, end: int) -> int:
        """Throw the buffered frames [start=_read, end) away; the device reads on after them."""
        if end <= start:
            return 0
        self.drops.append(Drop(trio.current_time(), how, start, end))
        self._dropped.append((start, end))
        self._buffer = self._buffer[end - start :]
        self._read = end
        if self._since is not None:
            self._since = (trio.current_time(), end) if end < self._written else None
        self._wake()
        return end - start

    def _clamp(self, position: int) -> int:
        return min(max(position, self._read), self._written)

    def _was_dropped(self, position: int) -> bool:
        return any(after < position <= upto for after, upto in self._dropped)

    def _wake(self) -> None:
        changed, self._changed = self._changed, trio.Event()
        changed.set()


# ---- the service ----------------------------------------------------------------------------

TAG_STEP = 256  # sample value (of 32768) between two utterances' tags: far above silence


@dataclass(frozen=True)
class Pace:
    """How a reply arrives: `seconds` of audio in chunks of `chunk` seconds (the first one
    `first_chunk`, if given), the first `delay` seconds after the request, each further one
    as soon as the service made it at `speed` seconds of audio a second (3: three times real
    time). `error`: the reply fails after its audio (a LinkError; `retriable`: the connection
    failed, not the request); `refuse`: the request itself fails (Sources.open raises)."""

    seconds: float = 1.0
    delay: float = 0.0
    speed: float = 10.0
    chunk: float = 0.1
    first_chunk: float | None = None
    error: str = ""
    retriable: bool = False
    refuse: str = ""

    def arrivals(self, rate: int) -> list[tuple[float, int]]:
        """(seconds after the request, frames) of each chunk."""
        total = round(self.seconds * rate)
        first = round((self.chunk if self.first_chunk is None else self.first_chunk) * rate)
        step = max(1, round(self.chunk * rate))
        sizes = [min(first, total)] if total else []
        while sum(sizes) < total:
            sizes.append(min(step, total - sum(sizes)))
        made, out = 0, []
        for index, size in enumerate(sizes):
            made += size if index else 0  # the first is ready at `delay`, each next once made
            out.append((self.delay + made / rate / self.speed, size))
        return out


class ClockedReply:
    """One reply (cache.replies.AnyReply): its chunks come at their instants, each stamped
    when it was read off the wire (REPLY_BUFFER_CHUNKS unread ones at most wait, as in the
    link, so a chunk that waited behind a slow reader is stamped late)."""

    def __init__(self, chunks: list[tuple[float, bytes]], pace: Pace) -> None:
        self.source = "service"
        self.complete = trio.Event()  # set once its end was read, or it was discarded
        self.retriable = pace.retriable
        self.discarded = False
        self.abandoned = False
        self._gone = trio.Event()  # discarded: a waiting receive returns at once
        self._error = pace.error
        self._chunks = deque(chunks)
        self._taken: list[float] = []  # when each chunk was received

    async def receive_stamped(self) -> tuple[bytes, float] | None:
        if self._chunks and not self.discarded:
            arrives, data = self._chunks[0]
            with trio.move_on_at(arrives):
                await self._gone.wait()
        else:
            await trio.lowlevel.checkpoint()
        if self.discarded or not self._chunks:
            self.complete.set()
            if self._error and not self.discarded:
                raise LinkError(self._error)
            return None
        self._chunks.popleft()
        stamp = arrives
        if len(self._taken) >= REPLY_BUFFER_CHUNKS:  # it waited in the socket until then
            stamp = max(stamp, self._taken[-REPLY_BUFFER_CHUNKS])
        self._taken.append(trio.current_time())
        return data, stamp

    def discard(self) -> None:
        self.discarded = True
        self._gone.set()
        self.complete.set()

    def abandon(self) -> None:
        self.abandoned = True
        self.discard()


@dataclass(frozen=True)
class Request:
    at: float  # trio time
    id: str
    may_fall_back: bool
    text: str | None


@dataclass
class ClockedSource:
    """The speaker's source of replies (speaker.ReplySource): each utterance's reply comes at
    its pace (`paces` by utterance id, else `pace`) as raw 16-bit PCM at `rate` (ask for it
    with `params`), every sample of it the utterance's tag. Records each request."""

    rate: int = 24000
    pace: Pace = field(default_factory=Pace)
    paces: dict[str, Pace] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    replies: list[tuple[str, ClockedReply]] = field(default_factory=list)
    _tags: dict[str, int] = field(default_factory=dict)

    def params(self, text: str, **more: Any) -> dict[str, Any]:
        """An utterance's parameters that make the speaker decode this source's audio."""
        return {"text": text, "output_format": "raw", "sample_rate": self.rate, **more}

    def frames(self, ident: str) -> int:
        """How many frames the reply for utterance `ident` brings."""
        return sum(size for _, size in self.paces.get(ident, self.pace).arrivals(self.rate))

    async def open(
        self, u: Utterance, *, may_fall_back: bool = True, text: str | None = None
    ) -> ClockedReply:
        await trio.lowlevel.checkpoint()
        now = trio.current_time()
        self.requests.append(Request(now, u.id, may_fall_back, text))
        pace = self.paces.get(u.id, self.pace)
        if pace.refuse:
            raise LinkError(pace.refuse)
        tag = self._tags.setdefault(u.id, TAG_STEP * (len(self._tags) + 1))
        sample = np.int16(tag).astype("<i2").tobytes()
        chunks = [(now + after, sample * size) for after, size in pace.arrivals(self.rate)]
        reply = ClockedReply(chunks, pace)
        self.replies.append((u.id, reply))
        return reply

    def who(self, sample: float) -> str | None:
        """The utterance whose audio has this sample value (None: silence)."""
        tag = round(sample * 32768)
        return next((ident for ident, t in self._tags.items() if t == tag), None)


@dataclass(frozen=True)
class Said:
    """A stretch of one utterance heard without a break: `frames` from trio time `at`."""

    id: str | None  # None: silence
    at: float
    until: float
    frames: int


def said(sink: ClockedSink, source: ClockedSource) -> list[Said]:
    """What the sink played, utterance by utterance, in the order heard."""
    out: list[Said] = []
    for piece in sink.heard:
        values = piece.pcm[:, 0]
        edges = [0, *(np.flatnonzero(np.diff(values)) + 1).tolist(), len(values)]
        for a, b in itertools.pairwise(edges):
            ident, at = source.who(float(values[a])), piece.at + a / piece.rate
            last = out[-1] if out else None
            if last is not None and last.id == ident and math.isclose(last.until, at):
                out[-1] = Said(ident, last.at, piece.at + b / piece.rate, last.frames + b - a)
            else:
                out.append(Said(ident, at, piece.at + b / piece.rate, b - a))
    return out


# ---- the speaker on them --------------------------------------------------------------------


class EventLog:
    """An Outbox (speech.Outbox) that keeps every event with the trio time it was sent."""

    def __init__(self) -> None:
        self.events: list[tuple[float, Message]] = []
        self._sent = trio.Event()

    def send(self, message: Message) -> None:
        self.events.append((trio.current_time(), message))
        sent, self._sent = self._sent, trio.Event()
        sent.set()

    async def wait(self, ident: str, name: str) -> float:
        """Until the utterance's event `name` was sent (at once if it was); its trio time."""
        while name not in self.names(ident):
            await self._sent.wait()
        return self.when(ident, name)

    def of(self, ident: str) -> list[tuple[float, UtteranceEvent]]:
        return [(t, e) for t, e in self.events if isinstance(e, UtteranceEvent) and e.id == ident]

    def names(self, ident: str) -> list[str]:
        return [e.name for _, e in self.of(ident)]

    def when(self, ident: str, name: str) -> float:
        """The trio time of the utterance's event `name` (KeyError: none)."""
        return next(t for t, e in self.of(ident) if e.name == name)


def clocked_speaker(
    sink: ClockedSink, source: ClockedSource, hub: EventHub, **options: Any
) -> Speaker:
    """A Speaker that plays into `sink` from `source` (typed: mypy checks that they stand
    where the player and the sources stand)."""
    options.setdefault("max_queue", 50)
    return Speaker(player=sink, hub=hub, sources=source, **options)
