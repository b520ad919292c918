"""Replies as the speaker reads them, from the cache, the local voice, or the service guarded
by both: the service's audio is recorded for the cache once it streamed completely, and the
local voice stands in when the service fails or is silent before its first audio."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Protocol

import trio

from playspeak.errors import LinkError
from playspeak.playai.link import Reply

CHUNK = 4096  # bytes per chunk read from memory: small, so the first decodes at once

SERVICE, CACHE, FALLBACK = "service", "cache", "fallback"


class AnyReply(Protocol):
    source: str

    @property
    def complete(self) -> trio.Event: ...
    @property
    def retriable(self) -> bool: ...
    async def receive_stamped(self) -> tuple[bytes, float] | None: ...
    def discard(self) -> None: ...
    # discard, and where the reply still streams over a connection others wait behind, let
    # its source reconnect rather than drain it (the PlayAI link; for the others: discard)
    def abandon(self) -> None: ...


class BytesReply:
    """A reply whose audio is all in hand: from the cache or the local voice."""

    def __init__(self, data: bytes, source: str) -> None:
        self.source = source
        self._data = data
        self._pos = 0
        self.complete = trio.Event()
        self.complete.set()
        self.retriable = False
        self.discarded = False

    async def receive_stamped(self) -> tuple[bytes, float] | None:
        await trio.lowlevel.checkpoint()
        if self.discarded or self._pos >= len(self._data):
            return None
        chunk = self._data[self._pos : self._pos + CHUNK]
        self._pos += len(chunk)
        return chunk, trio.current_time()

    def discard(self) -> None:
        self.discarded = True

    abandon = discard  # all in hand: nothing streams


Render = Callable[[], Awaitable[bytes]]


class GuardedReply:
    """The service's reply to one request, which may still be on its way (`attach`/`fail`).

    Until its first audio, a `fallback` (if given) replaces it when the request fails or no
    audio came by `deadline`: the service's reply is then discarded, even if it comes later,
    so the utterance is spoken once, by one voice. A reply that ends normally is handed whole
    to `store` (unless it passed `store_limit` bytes: then it is not kept in memory either);
    one that failed or was discarded never is.
    """

    def __init__(
        self,
        *,
        deadline: float = math.inf,
        late: str = "no audio in time",
        fallback: Render | None = None,
        on_fallback: Callable[[str], None] | None = None,
        on_audio: Callable[[], None] | None = None,
        store: Callable[[bytes], None] | None = None,
        store_limit: int = 0,
    ) -> None:
        self.source = SERVICE
        self.deadline = deadline
        self._late = late  # the reason given when the deadline passes
        self._fallback = fallback
        self._on_fallback = on_fallback
        self._on_audio = on_audio
        self._store = store
        self._store_limit = store_limit  # 0: no limit
        self._stored_bytes = 0
        self.inner: Reply | None = None
        self._ready = trio.Event()  # attached or failed
        self._request_error: LinkError | None = None
        self._local: BytesReply | None = None
        self._audio = False  # the service's first audio came
        self._parts: list[bytes] = []
        self._done = trio.Event()  # for `complete` when there is no inner reply
        self.discarded = False

    # ---- the request's side -------------------------------------------------------------

    def attach(self, reply: Reply) -> None:
        if self.discarded or self._local is not None:
            reply.discard()  # too late: nobody reads it (and unread it would hold the link)
            return
        self.inner = reply
        self._ready.set()

    def fail(self, error: LinkError) -> None:
        self._request_error = error
        self._done.set()
        self._ready.set()

    # ---- the speaker's side -------------------------------------------------------------

    @property
    def complete(self) -> trio.Event:
        if self.inner is not None and self._local is None and not self.discarded:
            return self.inner.complete
        return self._done

    @property
    def retriable(self) -> bool:
        return self.inner is not None and self.inner.retriable

    def discard(self) -> None:
        self._drop(abandon=False)

    def abandon(self) -> None:
        self._drop(abandon=True)

    def _drop(self, *, abandon: bool) -> None:
        self.discarded = True
        self._parts = []
        if self.inner is not None:
            if abandon:
                self.inner.abandon()
            else:
                self.inner.discard()
        if self._local is not None:
            self._local.discard()
        self._done.set()

    async def receive_stamped(self) -> tuple[bytes, float] | None:
        if self._local is not None:
            return await self._local.receive_stamped()
        if self._audio:
            return await self._next()
        deadline = self.deadline if self._fallback is not None else math.inf
        reason = self._late
        with trio.move_on_at(deadline):
            try:
                await self._ready.wait()
                if self.inner is None:
                    assert self._request_error is not None
                    raise self._request_error
                stamped = await self._next()
                if stamped is not None:
                    self._audio = True
                    if self._on_audio is not None:
                        self._on_audio()
                return stamped
            except LinkError as e:
                if self._fallback is None or self.discarded:
                    raise
                reason = str(e)
        return await self._switch(reason)

    async def _next(self) -> tuple[bytes, float] | None:
        assert self.inner is not None
        stamped = await self.inner.receive_stamped()  # LinkError: failed; never stored
        if stamped is not None:
            if self._store is not None:
                self._parts.append(stamped[0])
                self._stored_bytes += len(stamped[0])
                if self._store_limit and self._stored_bytes > self._store_limit:
                    self._store, self._parts = None, []  # too long to keep: played, not stored
        elif self._store is not None and self._parts and not self.discarded:
            self._store(b"".join(self._parts))  # ended normally: complete audio
            self._parts = []
        return stamped

    async def _switch(self, reason: str) -> tuple[bytes, float] | None:
        assert self._fallback is not None
        if self.inner is not None:
            self.inner.discard()
        self._parts = []
        try:
            data = await self._fallback()
        except Exception as e:  # espeak-ng missing or failing: say why, as a request failure
            raise LinkError(f"{reason}; and the local voice failed: {e}") from None
        self.source = FALLBACK
        if self._on_fallback is not None:
            self._on_fallback(reason)
        self._local = BytesReply(data, FALLBACK)
        self._done.set()
        return await self._local.receive_stamped()
