"""One connected control client: a bounded outbox of reply and event lines, written by one task.

Replies and events arrive typed (events.py) and are encoded here, for this wire."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable

import trio

from playspeak.control.protocol import encode_message
from playspeak.control.ratelimit import TokenBucket
from playspeak.door.peers import Peer
from playspeak.events import Message
from playspeak.speech import Utterance

log = logging.getLogger(__name__)
_ids = itertools.count(1)


class ClientSession:
    """A client's outbox. `send` never blocks: a client that stops reading while its buffer is
    full is disconnected, so it can never stall the daemon or other clients."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        buffer: int,
        peer: Peer | None = None,
        bucket: TokenBucket | None = None,
    ) -> None:
        self.id = next(_ids)
        self.stream = stream
        self.peer = peer or Peer()
        self.bucket = bucket  # None: no rate limit
        self.limited = False  # inside a run of refused lines (logged once per run)
        self.utterances: set[Utterance] = set()  # its own, not yet ended
        self.subscribed = False
        self._send, self._recv = trio.open_memory_channel[bytes](max(buffer, 1))
        self.scope = trio.CancelScope()
        self.drained = trio.Event()  # set once the outbox was closed and all of it written
        self.dropped_reason = ""
        self.wrote: Callable[[], None] = lambda: None  # called after each line written

    def busy(self) -> bool:
        """Waiting on something (events it subscribed to, its speech): not idle."""
        return self.subscribed or any(not u.ended for u in self.utterances)

    def __str__(self) -> str:
        return f"client {self.id} ({self.peer})"

    def send(self, message: Message) -> None:
        """Queue an event or reply as its JSON line; never blocks."""
        try:
            self._send.send_nowait(encode_message(message))
        except trio.WouldBlock:
            self.drop("not reading its events")
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    def drop(self, reason: str) -> None:
        """Disconnect this client (once); its utterances go on without it."""
        if self.dropped_reason:
            return
        self.dropped_reason = reason
        log.warning("%s is %s: disconnected", self, reason)
        self.scope.cancel()

    def close_outbox(self) -> None:
        """No more lines: the writer finishes what is queued, then ends."""
        self._send.close()

    async def write_lines(self) -> None:
        """Write queued lines until the outbox is closed. Raises BrokenResourceError when the
        peer went away."""
        async with self._recv:
            async for line in self._recv:
                await self.stream.send_all(line)
                self.wrote()
        self.drained.set()

    async def wait_utterances(self) -> None:
        """Wait until every utterance this client asked for has ended."""
        while self.utterances:
            await next(iter(self.utterances)).done.wait()
            self.utterances = {u for u in self.utterances if not u.ended}
